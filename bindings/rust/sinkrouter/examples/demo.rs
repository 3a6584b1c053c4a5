//! SinkRouter from Rust: a CPU context and a bf16 KV cache holding a sink-structured context of
//! 8K tokens (8 kv-heads, 4 q-heads each, head_dim 128, appended as f32), one dense decode step
//! and routed steps (tau 12, and an error budget of 1e-2). Prints how many V blocks routing
//! skipped, the largest certified error bound, and the error measured against dense.
//!
//! Run: SINKROUTER_LIB_DIR=<dir of libsinkrouter.so> LD_LIBRARY_PATH=<same dir> \
//!      cargo run --example demo
use std::process::ExitCode;

use sinkrouter::{Context, DecodeOptions, DecodeStep, Dtype, KvCache, KvCacheOptions, RoutingMode, SeqId};

#[allow(dead_code)] // shared with the tests, which use more of it
#[path = "../tests/support/sink_context.rs"]
mod sink_context;

use sink_context::{sink_structured, Shape};

const SHAPE: Shape = Shape { kv_heads: 8, group: 4, head_dim: 128, tokens: 8192 };

/// Output and per-head reports of one decode step, with the context's statistics for it.
struct Step {
    out: Vec<f32>,
    error_bound: Vec<f32>,
    skip_fraction: f64,
}

fn decode(
    context: &Context,
    cache: &KvCache,
    seq: SeqId,
    q: &[f32],
    options: DecodeOptions,
) -> sinkrouter::Result<Step> {
    let mut out = vec![0f32; q.len()];
    let mut error_bound = vec![0f32; SHAPE.q_heads()];
    context.reset_stats()?;
    let seqs = [seq];
    let step = DecodeStep::new(0, &seqs, SHAPE.q_heads() as i32, q, &mut out).head_error_bound(&mut error_bound);
    context.decode(cache, step, &DecodeOptions { collect_stats: true, ..options })?;
    Ok(Step { out, error_bound, skip_fraction: context.stats()?.v_skip_fraction() })
}

/// ||routed - dense|| / ||dense|| of each q-head.
fn head_errors(routed: &[f32], dense: &[f32]) -> Vec<f64> {
    routed
        .chunks(SHAPE.head_dim)
        .zip(dense.chunks(SHAPE.head_dim))
        .map(|(r, d)| {
            let diff: f64 = r.iter().zip(d).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
            let norm: f64 = d.iter().map(|&b| (b as f64).powi(2)).sum();
            (diff / norm).sqrt()
        })
        .collect()
}

fn run() -> sinkrouter::Result<bool> {
    let context = Context::cpu(0)?;
    println!("sinkrouter {} on {}", sinkrouter::version(), context.device_name()?);

    let options = KvCacheOptions {
        head_dim: SHAPE.head_dim as i32,
        dtype: Dtype::Bf16,
        ..KvCacheOptions::new(1, SHAPE.kv_heads as i32, SHAPE.tokens as i64)?
    };
    let cache = KvCache::new(&context, &options)?;
    let data = sink_structured(SHAPE, 2024);
    let seq = cache.add_sequence()?;
    cache.append(seq, 0, &data.k, &data.v)?; // f32 in, rounded to the cache's bf16
    println!(
        "context: {} tokens, {} kv-heads x {} q-heads each, head_dim {}, bf16 cache",
        SHAPE.tokens, SHAPE.kv_heads, SHAPE.group, SHAPE.head_dim
    );

    let defaults = DecodeOptions::new()?;
    let dense = decode(&context, &cache, seq, &data.q, DecodeOptions { routing: RoutingMode::Off, ..defaults })?;
    let routed_runs = [
        ("tau 12", DecodeOptions { routing: RoutingMode::Tau, tau: 12.0, error_budget: 0.0, ..defaults }),
        ("budget 1e-2", DecodeOptions { routing: RoutingMode::Budget, error_budget: 1e-2, ..defaults }),
    ];
    println!("dense               V blocks skipped {:5.1}%", 100.0 * dense.skip_fraction);
    let mut within_bounds = true;
    for (name, options) in routed_runs {
        let routed = decode(&context, &cache, seq, &data.q, options)?;
        let largest_bound = routed.error_bound.iter().cloned().fold(0f32, f32::max) as f64;
        let errors = head_errors(&routed.out, &dense.out);
        let largest_error = errors.iter().cloned().fold(0.0, f64::max);
        // Every head's measured error must sit within its own bound (plus f32 rounding).
        let heads_ok = errors.iter().zip(&routed.error_bound).all(|(&error, &bound)| error <= bound as f64 + 1e-5);
        within_bounds &= heads_ok;
        println!(
            "routed {name:<12} V blocks skipped {:5.1}%   largest error bound {largest_bound:.2e}   \
             largest measured error vs dense {largest_error:.2e}{}",
            100.0 * routed.skip_fraction,
            if heads_ok { "" } else { "   (ABOVE THE BOUND)" }
        );
    }
    Ok(within_bounds)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("a measured error exceeded its certified bound");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sinkrouter demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}
