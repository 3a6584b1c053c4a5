//! Attention variants of a decode step (learned sink logits, lse out, sliding window with kept
//! first tokens, logit soft cap) against float64 attention over the K/V read back from the
//! cache, and merge_attention_states: shards of a sequence decoded apart and merged equal the
//! whole sequence.
mod support;

use sinkrouter::{
    AttentionState, Bf16Bits, Context, DecodeOptions, DecodeStep, Dtype, F16Bits, KvCache, MergeStep, RoutingMode,
    SeqId,
};
use support::sink_context::{diffuse, sink_structured, Shape};
use support::{add_sequence_with, cpu_context, relative_error};

const SINKS: [f32; 4] = [0.5, f32::NEG_INFINITY, 2.0, -1.0]; // one head without a sink

/// The variants of one step, as the reference takes them.
#[derive(Debug, Clone, Copy)]
struct Variant<'a> {
    sinks: Option<&'a [f32]>,
    window_left: i32,
    window_sink_tokens: i32,
    soft_cap: f32,
}

const PLAIN: Variant<'static> = Variant { sinks: None, window_left: -1, window_sink_tokens: 0, soft_cap: 0.0 };

impl Variant<'_> {
    fn options(&self) -> DecodeOptions {
        DecodeOptions {
            routing: RoutingMode::Off,
            window_left: self.window_left,
            window_sink_tokens: self.window_sink_tokens,
            logit_soft_cap: self.soft_cap,
            ..DecodeOptions::new().unwrap()
        }
    }
}

/// float64 (out [q_heads][head_dim], lse [q_heads]) of one sequence, from the header's
/// definitions: the attended tokens are the last window_left + 1 and the first
/// window_sink_tokens (every token without a window); s = scale q.k, then cap * tanh(s / cap);
/// exp(sink) joins the denominator with no value; lse = log of the whole denominator.
fn variant_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    kv_heads: usize,
    head_dim: usize,
    variant: &Variant,
) -> (Vec<f64>, Vec<f64>) {
    let q_heads = q.len() / head_dim;
    let group = q_heads / kv_heads;
    let length = k.len() / (kv_heads * head_dim);
    let attended: Vec<usize> = if variant.window_left < 0 {
        (0..length).collect()
    } else {
        let window_begin = length.saturating_sub(1 + variant.window_left as usize);
        let kept_end = (variant.window_sink_tokens as usize).min(window_begin);
        (0..length).filter(|&t| t < kept_end || t >= window_begin).collect()
    };
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![0f64; q_heads * head_dim];
    let mut lse = vec![0f64; q_heads];
    for qh in 0..q_heads {
        let h = qh / group;
        let query = &q[qh * head_dim..(qh + 1) * head_dim];
        let row = |t: usize| (t * kv_heads + h) * head_dim;
        let logits: Vec<f64> = attended
            .iter()
            .map(|&t| {
                let s = scale
                    * query.iter().zip(&k[row(t)..row(t) + head_dim]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
                let cap = variant.soft_cap as f64;
                if cap > 0.0 {
                    cap * (s / cap).tanh()
                } else {
                    s
                }
            })
            .collect();
        let sink = variant.sinks.map_or(f64::NEG_INFINITY, |s| s[qh] as f64);
        let m = logits.iter().cloned().fold(sink, f64::max);
        let mut denominator = if sink == f64::NEG_INFINITY { 0.0 } else { (sink - m).exp() };
        let o = &mut out[qh * head_dim..(qh + 1) * head_dim];
        for (&t, s) in attended.iter().zip(&logits) {
            let w = (s - m).exp();
            denominator += w;
            for (o_i, &v_i) in o.iter_mut().zip(&v[row(t)..row(t) + head_dim]) {
                *o_i += w * v_i as f64;
            }
        }
        o.iter_mut().for_each(|x| *x /= denominator);
        lse[qh] = m + denominator.ln();
    }
    (out, lse)
}

#[track_caller]
fn assert_lse_close(actual: &[f32], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len());
    for (h, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!((a as f64 - e).abs() <= 1e-5 * e.abs().max(1.0), "{what}: lse of row {h} is {a}, expected {e}");
    }
}

/// Gaussian queries scaled by 1.5, so that logits spread enough for the soft cap to matter.
fn queries(shape: Shape, batch: usize, seed: u64) -> Vec<f32> {
    (0..batch).flat_map(|b| diffuse(Shape { tokens: 1, ..shape }, seed + b as u64).q).map(|x| 1.5 * x).collect()
}

fn check_variant(dtype: Dtype, variant: Variant, tolerance: f64) {
    let context = cpu_context();
    let shape = Shape { kv_heads: 2, group: 2, head_dim: 64, tokens: 0 };
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 1024, dtype);
    let lengths = [1usize, 30, 77, 300]; // shorter and longer than the windows, most not whole pages
    let seqs: Vec<SeqId> = lengths
        .iter()
        .enumerate()
        .map(|(i, &tokens)| {
            let data = diffuse(Shape { tokens, ..shape }, 40 + i as u64);
            add_sequence_with(&cache, &data.k, &data.v)
        })
        .collect();
    let q_heads = shape.q_heads();
    let q = queries(shape, seqs.len(), 900);
    let mut out = vec![f32::NAN; q.len()]; // poisoned: an unwritten row fails
    let mut lse = vec![f32::NAN; seqs.len() * q_heads];
    let mut step = DecodeStep::new(0, &seqs, q_heads as i32, &q, &mut out).lse(&mut lse);
    if let Some(sinks) = variant.sinks {
        step = step.sink_logits(sinks);
    }
    context.decode(&cache, step, &variant.options()).unwrap();

    let row = q_heads * shape.head_dim;
    for (b, (&seq, &tokens)) in seqs.iter().zip(&lengths).enumerate() {
        let (k, v) = cache.read_vec::<f32>(seq, 0, 0, tokens).unwrap();
        let (expected, expected_lse) =
            variant_reference(&q[b * row..(b + 1) * row], &k, &v, shape.kv_heads, shape.head_dim, &variant);
        for h in 0..q_heads {
            let span = b * row + h * shape.head_dim..b * row + (h + 1) * shape.head_dim;
            let error = relative_error(&out[span], &expected[h * shape.head_dim..(h + 1) * shape.head_dim]);
            assert!(error < tolerance, "{variant:?}, {dtype:?}: {tokens} tokens, q-head {h}: relative error {error:e}");
        }
        assert_lse_close(&lse[b * q_heads..(b + 1) * q_heads], &expected_lse, &format!("{variant:?}, {tokens} tokens"));
    }
}

#[test]
fn sinks_window_kept_tokens_soft_cap_and_lse_match_float64() {
    let combined = Variant { sinks: Some(&SINKS), window_left: 40, window_sink_tokens: 4, soft_cap: 2.5 };
    check_variant(Dtype::F32, combined, 1e-5);
    check_variant(Dtype::Bf16, combined, 1e-2);
}

#[test]
fn each_variant_alone_matches_float64() {
    for variant in [
        Variant { window_left: 31, ..PLAIN },
        Variant { window_left: 15, window_sink_tokens: 20, ..PLAIN },
        Variant { window_left: 5000, window_sink_tokens: 3, ..PLAIN },
        Variant { sinks: Some(&SINKS), window_left: 0, ..PLAIN },
        Variant { sinks: Some(&SINKS), ..PLAIN },
        Variant { soft_cap: 1.0, ..PLAIN },
        PLAIN,
    ] {
        check_variant(Dtype::F32, variant, 1e-5);
    }
}

#[test]
fn the_defaults_are_no_variant() {
    let options = DecodeOptions::new().unwrap();
    assert_eq!((options.window_left, options.window_sink_tokens, options.logit_soft_cap), (-1, 0, 0.0));
}

/// A cache holding the whole sequence and its shards [0, cuts[0]), [cuts[0], cuts[1]), ...,
/// each appended as its own sequence, for every (k, v) given.
fn shard_and_whole(cache: &KvCache, k: &[f32], v: &[f32], cuts: &[usize]) -> (SeqId, Vec<SeqId>) {
    let token = cache.token_elements();
    let whole = add_sequence_with(cache, k, v);
    let bounds: Vec<usize> =
        std::iter::once(0).chain(cuts.iter().cloned()).chain(std::iter::once(k.len() / token)).collect();
    let shards = bounds
        .windows(2)
        .map(|w| add_sequence_with(cache, &k[w[0] * token..w[1] * token], &v[w[0] * token..w[1] * token]))
        .collect();
    (whole, shards)
}

fn check_shards(cuts: &[usize]) {
    let context = cpu_context();
    let shape = Shape { kv_heads: 2, group: 2, head_dim: 64, tokens: 1000 };
    let batch = 2;
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 4 * (1000 + 64), Dtype::F32);
    let mut wholes = Vec::new();
    let mut shard_ids: Vec<Vec<SeqId>> = Vec::new();
    for b in 0..batch {
        let data = diffuse(shape, 70 + b as u64);
        let (whole, shards) = shard_and_whole(&cache, &data.k, &data.v, cuts);
        wholes.push(whole);
        shard_ids.push(shards);
    }
    let q_heads = shape.q_heads();
    let q = queries(shape, batch, 300);
    let options = DecodeOptions { logit_soft_cap: 3.0, ..PLAIN.options() };
    let heads = batch * q_heads;

    let mut whole_out = vec![f32::NAN; q.len()];
    let mut whole_lse = vec![f32::NAN; heads];
    let step = DecodeStep::new(0, &wholes, q_heads as i32, &q, &mut whole_out).lse(&mut whole_lse).sink_logits(&SINKS);
    context.decode(&cache, step, &options).unwrap();

    let shards = cuts.len() + 1;
    let mut outs = vec![vec![f32::NAN; q.len()]; shards];
    let mut lses = vec![vec![f32::NAN; heads]; shards];
    for (i, (out, lse)) in outs.iter_mut().zip(lses.iter_mut()).enumerate() {
        let seqs: Vec<SeqId> = shard_ids.iter().map(|s| s[i]).collect();
        let mut step = DecodeStep::new(0, &seqs, q_heads as i32, &q, out).lse(lse);
        if i == shards - 1 {
            step = step.sink_logits(&SINKS); // the learned sink belongs to one state only
        }
        context.decode(&cache, step, &options).unwrap();
    }
    let states: Vec<AttentionState> = outs.iter().zip(&lses).map(|(o, l)| AttentionState::new(o, l)).collect();
    let mut merged = vec![f32::NAN; q.len()];
    let mut merged_lse = vec![f32::NAN; heads];
    let mut merged_bound = vec![f32::NAN; heads];
    let step =
        MergeStep::new(shape.head_dim as i32, &states, &mut merged).lse(&mut merged_lse).bound(&mut merged_bound);
    context.merge_attention_states(step).unwrap();

    let whole_f64: Vec<f64> = whole_out.iter().map(|&x| x as f64).collect();
    for (r, (got, want)) in merged.chunks(shape.head_dim).zip(whole_f64.chunks(shape.head_dim)).enumerate() {
        let error = relative_error(got, want);
        assert!(error < 1e-5, "cuts {cuts:?}: row {r}: merged differs from the whole by {error:e}");
    }
    assert_lse_close(&merged_lse, &whole_lse.iter().map(|&x| x as f64).collect::<Vec<_>>(), &format!("cuts {cuts:?}"));
    assert!(merged_bound.iter().all(|&b| b == 0.0), "exact states merged into bounds {merged_bound:?}");

    // The merged state is a state again: merging the first two, then the rest, gives the same.
    if shards > 2 {
        let mut partial = vec![f32::NAN; q.len()];
        let mut partial_lse = vec![f32::NAN; heads];
        let step = MergeStep::new(shape.head_dim as i32, &states[..2], &mut partial).lse(&mut partial_lse);
        context.merge_attention_states(step).unwrap();
        let mut again_states = vec![AttentionState::new(&partial[..], &partial_lse[..])];
        again_states.extend_from_slice(&states[2..]);
        let mut again = vec![f32::NAN; q.len()];
        let mut again_lse = vec![f32::NAN; heads];
        let step = MergeStep::new(shape.head_dim as i32, &again_states, &mut again).lse(&mut again_lse);
        context.merge_attention_states(step).unwrap();
        assert!(relative_error(&again, &whole_f64) < 1e-5);
        assert_lse_close(&again_lse, &whole_lse.iter().map(|&x| x as f64).collect::<Vec<_>>(), "re-merged");
    }
}

#[test]
fn two_merged_shards_equal_the_whole_sequence() {
    check_shards(&[700]);
}

#[test]
fn three_merged_shards_equal_the_whole_sequence() {
    check_shards(&[100, 613]);
}

#[test]
fn one_token_shards_merge_too() {
    check_shards(&[1, 2]);
}

#[test]
fn merge_converts_between_element_types() {
    let context = cpu_context();
    let shape = Shape { kv_heads: 2, group: 2, head_dim: 64, tokens: 300 };
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 1024, Dtype::F32);
    let data = diffuse(shape, 11);
    let (whole, shards) = shard_and_whole(&cache, &data.k, &data.v, &[120]);
    let q_heads = shape.q_heads();
    let options = PLAIN.options();
    let mut whole_out = vec![0f32; data.q.len()];
    context.decode(&cache, DecodeStep::new(0, &[whole], q_heads as i32, &data.q, &mut whole_out), &options).unwrap();

    let mut outs = vec![vec![0f32; data.q.len()]; 2];
    let mut lses = vec![vec![0f32; q_heads]; 2];
    for ((out, lse), &seq) in outs.iter_mut().zip(lses.iter_mut()).zip(&shards) {
        context.decode(&cache, DecodeStep::new(0, &[seq], q_heads as i32, &data.q, out).lse(lse), &options).unwrap();
    }
    // f16 states (rounded here, as an f16 decode output would be) into a bf16 output.
    let f16_outs: Vec<Vec<F16Bits>> = outs.iter().map(|o| o.iter().map(|&x| f16_from_f32(x)).collect()).collect();
    let states: Vec<AttentionState<F16Bits>> =
        f16_outs.iter().zip(&lses).map(|(o, l)| AttentionState::new(o, l)).collect();
    let mut merged = vec![Bf16Bits(0); data.q.len()];
    context.merge_attention_states(MergeStep::new(64, &states, &mut merged)).unwrap();
    let merged: Vec<f32> = merged.iter().map(|b| b.to_f32()).collect();
    let want: Vec<f64> = whole_out.iter().map(|&x| x as f64).collect();
    let error = relative_error(&merged, &want);
    assert!(error < 1e-2, "f16 states merged into bf16: relative error {error:e}");
}

/// f16 bits of a normal-range f32 (truncated mantissa: close enough for a 1e-2 comparison).
fn f16_from_f32(x: f32) -> F16Bits {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exponent <= 0 {
        return F16Bits(sign); // tiny: flush to zero
    }
    assert!(exponent < 31, "{x} overflows f16");
    F16Bits(sign | ((exponent as u16) << 10) | ((bits >> 13) & 0x3ff) as u16)
}

#[test]
fn routed_shards_merge_within_their_combined_bound() {
    let context = cpu_context();
    let shape = Shape { kv_heads: 2, group: 4, head_dim: 128, tokens: 4096 };
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 2 * 4096 + 256, Dtype::F32);
    let data = sink_structured(shape, 5);
    let (whole, shards) = shard_and_whole(&cache, &data.k, &data.v, &[2500]);
    let q_heads = shape.q_heads();
    let mut dense = vec![0f32; data.q.len()];
    context
        .decode(&cache, DecodeStep::new(0, &[whole], q_heads as i32, &data.q, &mut dense), &PLAIN.options())
        .unwrap();

    let routed =
        DecodeOptions { routing: RoutingMode::Tau, tau: 8.0, error_budget: 0.0, ..DecodeOptions::new().unwrap() };
    let mut outs = vec![vec![0f32; data.q.len()]; 2];
    let mut lses = vec![vec![0f32; q_heads]; 2];
    let mut bounds = vec![vec![0f32; q_heads]; 2];
    for (((out, lse), bound), seq) in outs.iter_mut().zip(lses.iter_mut()).zip(bounds.iter_mut()).zip(&shards) {
        let seqs = std::slice::from_ref(seq);
        let step = DecodeStep::new(0, seqs, q_heads as i32, &data.q, out).lse(lse).head_error_bound(bound);
        context.decode(&cache, step, &routed).unwrap();
    }
    assert!(bounds.iter().flatten().any(|&b| b > 0.0), "routing skipped nothing: the test shows nothing");
    let states: Vec<AttentionState> =
        outs.iter().zip(&lses).zip(&bounds).map(|((o, l), b)| AttentionState::new(o, l).bound(b)).collect();
    let mut merged = vec![0f32; data.q.len()];
    let mut merged_bound = vec![f32::NAN; q_heads];
    context.merge_attention_states(MergeStep::new(128, &states, &mut merged).bound(&mut merged_bound)).unwrap();
    for (h, (got, want)) in merged.chunks(128).zip(dense.chunks(128)).enumerate() {
        let error = relative_error(got, &want.iter().map(|&x| x as f64).collect::<Vec<_>>());
        assert!(
            merged_bound[h] > 0.0 && error <= merged_bound[h] as f64 + 1e-5,
            "q-head {h}: error {error:e}, bound {}",
            merged_bound[h]
        );
    }
    // A state without a bound is exact: the merged bound can only shrink.
    let exact_first = [AttentionState::new(&outs[0][..], &lses[0][..]), states[1]];
    let mut smaller = vec![f32::NAN; q_heads];
    context.merge_attention_states(MergeStep::new(128, &exact_first, &mut merged).bound(&mut smaller)).unwrap();
    assert!(smaller.iter().zip(&merged_bound).all(|(s, m)| s <= m), "{smaller:?} vs {merged_bound:?}");
}

#[test]
fn routed_variants_keep_the_bound_and_an_exact_lse() {
    let context: Context = cpu_context();
    let shape = Shape { kv_heads: 2, group: 4, head_dim: 128, tokens: 4096 };
    let cache = support::cache(&context, shape.kv_heads, shape.head_dim, 4096, Dtype::F32);
    let data = sink_structured(shape, 3);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    let sinks = [-1.0f32, 0.5, f32::NEG_INFINITY, 1.0, 0.0, -2.0, 3.0, -0.5];
    let variant = Variant { sinks: Some(&sinks), window_left: 3000, window_sink_tokens: 8, soft_cap: 30.0 };
    let options =
        DecodeOptions { routing: RoutingMode::Budget, error_budget: 1e-2, collect_stats: true, ..variant.options() };
    let q_heads = shape.q_heads();
    let mut out = vec![f32::NAN; data.q.len()];
    let mut lse = vec![f32::NAN; q_heads];
    let mut bound = vec![f32::NAN; q_heads];
    context.reset_stats().unwrap();
    let seqs = [seq];
    let step = DecodeStep::new(0, &seqs, q_heads as i32, &data.q, &mut out)
        .lse(&mut lse)
        .head_error_bound(&mut bound)
        .sink_logits(&sinks);
    context.decode(&cache, step, &options).unwrap();
    assert!(context.stats().unwrap().blocks_v_skipped > 0);
    let (k, v) = cache.read_vec::<f32>(seq, 0, 0, shape.tokens).unwrap();
    let (expected, expected_lse) = variant_reference(&data.q, &k, &v, shape.kv_heads, shape.head_dim, &variant);
    for h in 0..q_heads {
        let error = relative_error(&out[h * 128..(h + 1) * 128], &expected[h * 128..(h + 1) * 128]);
        assert!(bound[h] <= 1e-2 && error <= bound[h] as f64 + 1e-5, "q-head {h}: error {error:e}, bound {}", bound[h]);
    }
    assert_lse_close(&lse, &expected_lse, "routed");
}
