//! Dense decode (routing off) against attention computed here in float64 over the cache's
//! contents, for several shapes, dtypes and a batch of sequences of mixed lengths.
mod support;

use sinkrouter::{DecodeOptions, DecodeStep, Dtype, KvCache, KvCacheOptions, RoutingMode, SeqId};
use support::sink_context::{diffuse, Shape};
use support::{add_sequence_with, cpu_context, reference_attention, relative_error};

// Lengths that are not multiples of a page, a one-token sequence, and one spanning many pages.
const LENGTHS: [usize; 4] = [1, 17, 300, 1000];

fn check_dense(head_dim: usize, kv_heads: usize, group: usize, dtype: Dtype, page_tokens: i32) {
    let context = cpu_context();
    let options = KvCacheOptions {
        head_dim: head_dim as i32,
        page_tokens,
        dtype,
        ..KvCacheOptions::new(1, kv_heads as i32, 4096).unwrap()
    };
    let cache = KvCache::new(&context, &options).unwrap();

    let mut seqs: Vec<SeqId> = Vec::new();
    let mut q = Vec::new();
    let mut reference = Vec::new();
    for (i, &tokens) in LENGTHS.iter().enumerate() {
        let data = diffuse(Shape { kv_heads, group, head_dim, tokens }, 100 + i as u64);
        let seq = add_sequence_with(&cache, &data.k, &data.v);
        // The reference uses what the cache holds (rounded to its dtype), read back as f32.
        let (k, v) = cache.read_vec::<f32>(seq, 0, 0, tokens).unwrap();
        reference.push(reference_attention(&data.q, &k, &v, kv_heads, head_dim, 1.0 / (head_dim as f64).sqrt()));
        seqs.push(seq);
        q.extend_from_slice(&data.q);
    }

    let mut out = vec![f32::NAN; q.len()]; // poisoned: an unwritten row fails the comparison
    let q_heads = (kv_heads * group) as i32;
    let dense = DecodeOptions { routing: RoutingMode::Off, ..DecodeOptions::new().unwrap() };
    context.decode(&cache, DecodeStep::new(0, &seqs, q_heads, &q, &mut out), &dense).unwrap();

    let row = kv_heads * group * head_dim;
    for (b, expected) in reference.iter().enumerate() {
        for h in 0..kv_heads * group {
            let got = &out[b * row + h * head_dim..b * row + (h + 1) * head_dim];
            let want = &expected[h * head_dim..(h + 1) * head_dim];
            let error = relative_error(got, want);
            assert!(
                error < 1e-5,
                "head_dim {head_dim}, group {group}, {dtype:?}: sequence of {} tokens, q-head {h}: relative error {error:e}",
                LENGTHS[b]
            );
        }
    }
}

#[test]
fn f32_cache_head_dim_64_no_grouping() {
    check_dense(64, 4, 1, Dtype::F32, 16);
}

#[test]
fn bf16_cache_head_dim_128_group_4() {
    check_dense(128, 2, 4, Dtype::Bf16, 16);
}

#[test]
fn f16_cache_head_dim_256_group_8_pages_of_64() {
    check_dense(256, 1, 8, Dtype::F16, 64);
}

#[test]
fn an_explicit_scale_is_used() {
    let context = cpu_context();
    let shape = Shape { kv_heads: 1, group: 2, head_dim: 64, tokens: 200 };
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 1024, Dtype::F32);
    let data = diffuse(shape, 7);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    let scale = 0.5f32;
    let mut out = vec![f32::NAN; data.q.len()];
    let options = DecodeOptions { scale, ..DecodeOptions::new().unwrap() };
    context.decode(&cache, DecodeStep::new(0, &[seq], 2, &data.q, &mut out), &options).unwrap();
    let expected = reference_attention(&data.q, &data.k, &data.v, 1, 64, scale as f64);
    assert!(relative_error(&out, &expected) < 1e-5);
}
