//! Handle lifetimes: a cache keeps its context alive, forks share pages and copy on write,
//! and creating and dropping many handles in any order neither crashes nor loses pages.
mod support;

use sinkrouter::{Context, DecodeOptions, DecodeStep, Dtype, KvCache, KvCacheOptions, Pages};
use support::sink_context::{diffuse, Shape};
use support::{add_sequence_with, reference_attention, relative_error};

const SHAPE: Shape = Shape { kv_heads: 2, group: 2, head_dim: 64, tokens: 40 };

fn f32_cache(context: &Context, capacity_tokens: i64) -> KvCache {
    support::cache(context, SHAPE.kv_heads, SHAPE.head_dim, capacity_tokens, Dtype::F32)
}

#[test]
fn a_cache_keeps_its_context_alive() {
    let context = Context::cpu(1).unwrap();
    let cache = f32_cache(&context, 256);
    drop(context); // the cache's Arc keeps the C context alive

    let data = diffuse(SHAPE, 31);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    let mut out = vec![f32::NAN; data.q.len()];
    let context = cache.context();
    context
        .decode(
            &cache,
            DecodeStep::new(0, &[seq], SHAPE.q_heads() as i32, &data.q, &mut out),
            &DecodeOptions::new().unwrap(),
        )
        .unwrap();
    let expected = reference_attention(&data.q, &data.k, &data.v, SHAPE.kv_heads, SHAPE.head_dim, 0.125);
    assert!(relative_error(&out, &expected) < 1e-5);
    drop(cache); // the context (one clone left) outlives its last cache
    assert_eq!(context.num_threads().unwrap(), 1);
}

#[test]
fn forks_share_pages_and_copy_on_write() {
    let context = Context::cpu(1).unwrap();
    let cache = f32_cache(&context, 256); // 16 pages of 16 tokens
    let total = cache.pages().unwrap().total;
    assert_eq!(total, 16);
    let data = diffuse(Shape { tokens: 42, ..SHAPE }, 32);
    let row = SHAPE.token_elements();
    let parent = add_sequence_with(&cache, &data.k[..40 * row], &data.v[..40 * row]);
    assert_eq!(cache.pages().unwrap(), Pages { total, free: total - 3 });

    let child = cache.fork(parent).unwrap();
    assert_eq!(cache.pages().unwrap().free, total - 3, "a fork shares its parent's pages");

    // The child's first write lands in the shared, half-full last page: that page is copied.
    cache.append(child, 0, &data.k[40 * row..41 * row], &data.v[40 * row..41 * row]).unwrap();
    assert_eq!(cache.pages().unwrap().free, total - 4);
    cache.append(parent, 0, &data.k[41 * row..], &data.v[41 * row..]).unwrap();

    let (parent_k, _) = cache.read_vec::<f32>(parent, 0, 0, 41).unwrap();
    let (child_k, _) = cache.read_vec::<f32>(child, 0, 0, 41).unwrap();
    assert_eq!(parent_k[..40 * row], child_k[..40 * row]);
    assert_eq!(parent_k[40 * row..], data.k[41 * row..], "the parent sees its own append");
    assert_eq!(child_k[40 * row..], data.k[40 * row..41 * row], "the child sees its own append");

    cache.remove(parent).unwrap();
    assert_eq!(cache.pages().unwrap().free, total - 3, "the child still holds its three pages");
    cache.remove(child).unwrap();
    assert_eq!(cache.pages().unwrap().free, total);
}

#[test]
fn many_handles_created_and_dropped_in_any_order() {
    let data = diffuse(Shape { tokens: 100, ..SHAPE }, 33);
    let row = SHAPE.token_elements();
    for round in 0..200 {
        let context = Context::cpu(1).unwrap();
        let options = KvCacheOptions { head_dim: 64, dtype: Dtype::Bf16, ..KvCacheOptions::new(2, 2, 512).unwrap() };
        let caches = [KvCache::new(&context, &options).unwrap(), KvCache::new(&context, &options).unwrap()];
        for cache in &caches {
            let total = cache.pages().unwrap().total;
            let tokens = 1 + round % 100;
            let root = cache.add_sequence().unwrap();
            for layer in 0..2 {
                cache.append(root, layer, &data.k[..tokens * row], &data.v[..tokens * row]).unwrap();
            }
            let forks = [cache.fork(root).unwrap(), cache.fork(root).unwrap()];
            cache.append(forks[0], 1, &data.k[..row], &data.v[..row]).unwrap();
            cache.truncate(forks[1], tokens as i64 / 2).unwrap();
            if round % 3 == 0 {
                continue; // leave the sequences to the cache's destroy
            }
            for seq in [forks[1], root, forks[0]] {
                cache.remove(seq).unwrap();
            }
            assert_eq!(cache.pages().unwrap(), Pages { total, free: total }, "round {round}: pages were lost");
        }
        // Vary which handle goes first: the context value, or the caches.
        let context_clone = caches[round % 2].context();
        if round % 2 == 0 {
            drop(context);
            drop(caches);
        } else {
            drop(caches);
            drop(context);
        }
        assert!(context_clone.device_name().unwrap().starts_with("cpu"));
    }
}
