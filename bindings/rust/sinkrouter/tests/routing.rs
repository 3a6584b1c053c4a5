//! Routed decode (tau and budget) against dense decode on a sink-structured context: routing
//! must skip something there, the true error must stay within the reported bound, and the
//! budget mode must never pass its budget. On diffuse data it must skip nothing.
mod support;

use sinkrouter::{Context, DecodeOptions, DecodeStats, DecodeStep, Dtype, KvCache, RoutingMode, SeqId};
use support::sink_context::{diffuse, sink_structured, Shape};
use support::{add_sequence_with, cpu_context, head_errors};

/// f32 arithmetic differs between the two paths; the bound covers only what routing skipped.
const ROUNDING: f64 = 1e-5;
const SHAPE: Shape = Shape { kv_heads: 4, group: 4, head_dim: 128, tokens: 4096 };

struct Step {
    out: Vec<f32>,
    skipped_mass: Vec<f32>,
    error_bound: Vec<f32>,
    stats: DecodeStats,
}

fn run(context: &Context, cache: &KvCache, seq: SeqId, q: &[f32], options: DecodeOptions) -> Step {
    let heads = SHAPE.q_heads();
    let mut step = Step {
        out: vec![f32::NAN; q.len()],
        skipped_mass: vec![f32::NAN; heads],
        error_bound: vec![f32::NAN; heads],
        stats: DecodeStats::default(),
    };
    context.reset_stats().unwrap();
    let options = DecodeOptions { collect_stats: true, ..options };
    let seqs = [seq];
    let decode = DecodeStep::new(0, &seqs, heads as i32, q, &mut step.out)
        .head_skipped_mass(&mut step.skipped_mass)
        .head_error_bound(&mut step.error_bound);
    context.decode(cache, decode, &options).unwrap();
    step.stats = context.stats().unwrap();
    step
}

fn setup(data: &support::sink_context::Context) -> (Context, KvCache, SeqId) {
    let context = cpu_context();
    let cache = support::cache(&context, SHAPE.kv_heads, SHAPE.head_dim, SHAPE.tokens as i64, Dtype::Bf16);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    (context, cache, seq)
}

fn dense_options() -> DecodeOptions {
    DecodeOptions { routing: RoutingMode::Off, ..DecodeOptions::new().unwrap() }
}

/// The true error of every head is within its reported bound.
fn assert_within_bound(routed: &Step, dense: &Step, what: &str) {
    let errors = head_errors(&routed.out, &dense.out, SHAPE.head_dim);
    for (h, error) in errors.iter().enumerate() {
        let bound = routed.error_bound[h] as f64;
        assert!(error <= &(bound + ROUNDING), "{what}: q-head {h}: true error {error:e} > bound {bound:e}");
    }
}

#[test]
fn tau_routing_skips_sink_structured_blocks_within_its_bound() {
    let data = sink_structured(SHAPE, 11);
    let (context, cache, seq) = setup(&data);
    let dense = run(&context, &cache, seq, &data.q, dense_options());
    let tau =
        DecodeOptions { routing: RoutingMode::Tau, tau: 12.0, error_budget: 0.0, ..DecodeOptions::new().unwrap() };
    let routed = run(&context, &cache, seq, &data.q, tau);

    assert!(routed.stats.blocks_v_skipped > 0, "tau 12 skipped no V block: {:?}", routed.stats);
    for h in 0..SHAPE.q_heads() {
        assert!(routed.skipped_mass[h] > 0.0, "q-head {h} skipped no mass");
        assert!(routed.error_bound[h] >= 0.0 && routed.error_bound[h].is_finite());
    }
    assert_within_bound(&routed, &dense, "tau 12");
    assert_eq!(dense.stats.blocks_v_skipped, 0, "dense decode skipped V blocks");
    assert_eq!(routed.stats.blocks_total, dense.stats.blocks_total);
}

#[test]
fn budget_routing_never_passes_its_budget() {
    let data = sink_structured(SHAPE, 12);
    let (context, cache, seq) = setup(&data);
    let dense = run(&context, &cache, seq, &data.q, dense_options());
    for budget in [1e-3f32, 1e-2, 1e-1] {
        let options =
            DecodeOptions { routing: RoutingMode::Budget, error_budget: budget, ..DecodeOptions::new().unwrap() };
        let routed = run(&context, &cache, seq, &data.q, options);
        let what = format!("budget {budget:e}");
        assert!(routed.stats.blocks_v_skipped > 0, "{what} skipped no V block: {:?}", routed.stats);
        assert!(routed.skipped_mass.iter().any(|&m| m > 0.0), "{what}: no head skipped any mass");
        for h in 0..SHAPE.q_heads() {
            assert!(routed.error_bound[h] <= budget, "{what}: q-head {h} reports bound {:e}", routed.error_bound[h]);
        }
        assert!(routed.stats.max_error_bound <= budget as f64, "{what}: stats {:?}", routed.stats);
        assert_within_bound(&routed, &dense, &what);
        let errors = head_errors(&routed.out, &dense.out, SHAPE.head_dim);
        assert!(errors.iter().all(|&e| e <= budget as f64 + ROUNDING), "{what}: true errors {errors:?}");
    }
}

/// The default is the library's: -1, the backend's threshold (0 on the CPU).
#[test]
fn route_from_tokens_defaults_to_the_backends_threshold() {
    assert_eq!(DecodeOptions::new().unwrap().route_from_tokens, -1, "the library's default");
}

/// A routed step whose sequence is shorter than `route_from_tokens` runs dense: the very bits
/// of routing off, nothing skipped, bound 0, counted in `steps_run_dense`. At the threshold it
/// routes, and so does -1 (the CPU's threshold is 0).
#[test]
fn route_from_tokens_runs_shorter_routed_steps_dense() {
    let data = sink_structured(SHAPE, 16);
    let (context, cache, seq) = setup(&data);
    let dense = run(&context, &cache, seq, &data.q, dense_options());
    assert_eq!(dense.stats.steps_run_dense, 0, "a dense step is not a routed one run dense");
    let budget = DecodeOptions { routing: RoutingMode::Budget, error_budget: 1e-2, ..DecodeOptions::new().unwrap() };
    let length = SHAPE.tokens as i64;

    let below = run(&context, &cache, seq, &data.q, DecodeOptions { route_from_tokens: length + 1, ..budget });
    let bits = |out: &[f32]| out.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&below.out) == bits(&dense.out), "a step run dense differs from routing off");
    assert!(below.skipped_mass.iter().all(|&m| m == 0.0), "skipped mass {:?}", below.skipped_mass);
    assert!(below.error_bound.iter().all(|&b| b == 0.0), "error bound {:?}", below.error_bound);
    assert_eq!(below.stats.steps_run_dense, 1, "{:?}", below.stats);
    assert_eq!(below.stats.blocks_v_skipped, 0, "{:?}", below.stats);
    assert_eq!((below.stats.max_skipped_mass, below.stats.max_error_bound), (0.0, 0.0), "{:?}", below.stats);

    for route_from_tokens in [length, -1] {
        let at = run(&context, &cache, seq, &data.q, DecodeOptions { route_from_tokens, ..budget });
        let what = format!("route_from_tokens {route_from_tokens}");
        assert!(at.stats.blocks_v_skipped > 0, "{what} skipped no V block: {:?}", at.stats);
        assert_eq!(at.stats.steps_run_dense, 0, "{what}: {:?}", at.stats);
        assert_within_bound(&at, &dense, &what);
    }
}

#[test]
fn a_wider_budget_skips_at_least_as_much() {
    let data = sink_structured(SHAPE, 13);
    let (context, cache, seq) = setup(&data);
    let skipped = |budget: f32| {
        let options =
            DecodeOptions { routing: RoutingMode::Budget, error_budget: budget, ..DecodeOptions::new().unwrap() };
        run(&context, &cache, seq, &data.q, options).stats.blocks_v_skipped
    };
    let (tight, loose) = (skipped(1e-4), skipped(1e-1));
    assert!(loose > tight, "budget 1e-1 skipped {loose} blocks, 1e-4 skipped {tight}");
}

#[test]
fn diffuse_data_gives_routing_nothing_to_skip() {
    let data = diffuse(SHAPE, 14);
    let (context, cache, seq) = setup(&data);
    let dense = run(&context, &cache, seq, &data.q, dense_options());
    let tau = DecodeOptions { routing: RoutingMode::Tau, tau: 12.0, ..DecodeOptions::new().unwrap() };
    let routed = run(&context, &cache, seq, &data.q, tau);
    assert_eq!(routed.stats.blocks_v_skipped, 0);
    assert!(routed.skipped_mass.iter().all(|&m| m == 0.0), "{:?}", routed.skipped_mass);
    let errors = head_errors(&routed.out, &dense.out, SHAPE.head_dim);
    assert!(errors.iter().all(|&e| e <= ROUNDING), "{errors:?}");
}

#[test]
fn stats_count_only_steps_that_collect_and_reset_to_zero() {
    let data = sink_structured(SHAPE, 15);
    let (context, cache, seq) = setup(&data);
    context.reset_stats().unwrap();
    let mut out = vec![0f32; data.q.len()];
    let heads = SHAPE.q_heads() as i32;
    let quiet = DecodeOptions { collect_stats: false, ..DecodeOptions::new().unwrap() };
    let counted = DecodeOptions { collect_stats: true, ..quiet };
    context.decode(&cache, DecodeStep::new(0, &[seq], heads, &data.q, &mut out), &quiet).unwrap();
    assert_eq!(context.stats().unwrap().steps, 0);
    for _ in 0..3 {
        context.decode(&cache, DecodeStep::new(0, &[seq], heads, &data.q, &mut out), &counted).unwrap();
    }
    let stats = context.stats().unwrap();
    assert_eq!(stats.steps, 3);
    assert_eq!(stats.heads, 3 * heads as i64);
    context.reset_stats().unwrap();
    assert_eq!(context.stats().unwrap(), DecodeStats::default());
}
