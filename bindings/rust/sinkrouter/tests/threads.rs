//! Contexts and caches are Send + Sync (sinkrouter.h: handles may be used from several threads
//! at once): appends, reads and decode steps from many threads give the single-thread results.
mod support;

use std::sync::Arc;
use std::thread;

use sinkrouter::{Context, DecodeOptions, DecodeStep, Dtype, KvCache};
use support::sink_context::{diffuse, Shape};
use support::{add_sequence_with, reference_attention, relative_error};

const SHAPE: Shape = Shape { kv_heads: 2, group: 4, head_dim: 128, tokens: 700 };
const THREADS: u64 = 4;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    assert_send_sync::<Context>();
    assert_send_sync::<KvCache>();
}

#[test]
fn threads_append_and_decode_their_own_sequences_while_others_read_a_shared_one() {
    let context = Context::cpu(2).unwrap();
    let cache = Arc::new(support::cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 8192, Dtype::F32));
    let shared = diffuse(SHAPE, 40);
    let shared_seq = add_sequence_with(&cache, &shared.k, &shared.v);
    let shared_expected =
        reference_attention(&shared.q, &shared.k, &shared.v, SHAPE.kv_heads, SHAPE.head_dim, 1.0 / 128f64.sqrt());
    let shared = Arc::new(shared);

    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let (context, cache, shared) = (context.clone(), Arc::clone(&cache), Arc::clone(&shared));
            let shared_expected = shared_expected.clone();
            thread::spawn(move || {
                let heads = SHAPE.q_heads() as i32;
                let options = DecodeOptions::new().unwrap();
                let own = diffuse(SHAPE, 41 + i);
                let seq = add_sequence_with(&cache, &own.k, &own.v); // chunked appends, interleaved
                let mut out = vec![f32::NAN; own.q.len()];
                for _ in 0..5 {
                    context.decode(&cache, DecodeStep::new(0, &[seq], heads, &own.q, &mut out), &options).unwrap();
                    let expected = reference_attention(
                        &own.q,
                        &own.k,
                        &own.v,
                        SHAPE.kv_heads,
                        SHAPE.head_dim,
                        1.0 / 128f64.sqrt(),
                    );
                    assert!(relative_error(&out, &expected) < 1e-5, "thread {i}: own sequence");
                    context
                        .decode(&cache, DecodeStep::new(0, &[shared_seq], heads, &shared.q, &mut out), &options)
                        .unwrap();
                    assert!(relative_error(&out, &shared_expected) < 1e-5, "thread {i}: shared sequence");
                }
                let (k, _) = cache.read_vec::<f32>(seq, 0, 0, SHAPE.tokens).unwrap();
                assert_eq!(k, own.k, "thread {i}: its tokens came back changed");
                cache.remove(seq).unwrap();
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker thread failed");
    }
    cache.remove(shared_seq).unwrap();
    let pages = cache.pages().unwrap();
    assert_eq!(pages.free, pages.total);
}
