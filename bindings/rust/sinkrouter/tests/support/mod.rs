//! Helpers of the integration tests: synthetic inputs, a float64 reference, and small setup.
#![allow(dead_code)] // each test file uses a different part

pub mod sink_context;

use sinkrouter::{Context, Dtype, KvCache, KvCacheOptions, SeqId};

/// A CPU context with two workers (the test machine's cores); several threads, so the split
/// and merge paths run.
pub fn cpu_context() -> Context {
    Context::cpu(2).expect("a CPU context")
}

/// A one-layer cache for `kv_heads` x `head_dim` with room for `capacity_tokens`.
pub fn cache(context: &Context, kv_heads: usize, head_dim: usize, capacity_tokens: i64, dtype: Dtype) -> KvCache {
    let options = KvCacheOptions {
        head_dim: head_dim as i32,
        dtype,
        ..KvCacheOptions::new(1, kv_heads as i32, capacity_tokens).expect("default cache options")
    };
    KvCache::new(context, &options).expect("a cache")
}

/// Attention in float64 for one query per sequence: `q` [q_heads][head_dim] against `k`, `v`
/// [tokens][kv_heads][head_dim]; q-head h reads kv-head h / group. Returns [q_heads][head_dim].
pub fn reference_attention(q: &[f32], k: &[f32], v: &[f32], kv_heads: usize, head_dim: usize, scale: f64) -> Vec<f64> {
    let q_heads = q.len() / head_dim;
    let group = q_heads / kv_heads;
    let tokens = k.len() / (kv_heads * head_dim);
    let mut out = vec![0f64; q_heads * head_dim];
    for qh in 0..q_heads {
        let h = qh / group;
        let query = &q[qh * head_dim..(qh + 1) * head_dim];
        let row = |t: usize| (t * kv_heads + h) * head_dim;
        let logits: Vec<f64> = (0..tokens)
            .map(|t| {
                scale * query.iter().zip(&k[row(t)..row(t) + head_dim]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let o = &mut out[qh * head_dim..(qh + 1) * head_dim];
        for (t, w) in weights.iter().enumerate() {
            for (o_i, &v_i) in o.iter_mut().zip(&v[row(t)..row(t) + head_dim]) {
                *o_i += w / total * v_i as f64;
            }
        }
    }
    out
}

/// ||a - b|| / ||b||.
pub fn relative_error(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

/// Relative error of each head's row: rows of `head_dim` elements.
pub fn head_errors(out: &[f32], reference: &[f32], head_dim: usize) -> Vec<f64> {
    out.chunks(head_dim)
        .zip(reference.chunks(head_dim))
        .map(|(o, r)| relative_error(o, &r.iter().map(|&x| x as f64).collect::<Vec<_>>()))
        .collect()
}

/// Appends `tokens` [n][kv_heads][head_dim] to layer 0 of a new sequence, in chunks of up to
/// 1000 tokens (as an engine's prefill would).
pub fn add_sequence_with(cache: &KvCache, k: &[f32], v: &[f32]) -> SeqId {
    let seq = cache.add_sequence().expect("a sequence");
    let chunk = 1000 * cache.token_elements();
    for (k_part, v_part) in k.chunks(chunk).zip(v.chunks(chunk)) {
        cache.append(seq, 0, k_part, v_part).expect("append");
    }
    seq
}
