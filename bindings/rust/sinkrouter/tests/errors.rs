//! Bad arguments give Err with the right status and a message naming the argument, and
//! change nothing; slices of the wrong length are caught before the library is called.
mod support;

use sinkrouter::{
    AttentionState, Backend, Context, ContextOptions, DecodeOptions, DecodeStep, Dtype, Error, KvCache, KvCacheOptions,
    MergeStep, Pages, RoutingMode, SeqId, Status,
};
use support::sink_context::{diffuse, Shape};
use support::{add_sequence_with, cpu_context};

const SHAPE: Shape = Shape { kv_heads: 2, group: 2, head_dim: 64, tokens: 40 };

fn setup() -> (Context, KvCache, SeqId, support::sink_context::Context) {
    let context = cpu_context();
    let cache = support::cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 64, Dtype::F32);
    let data = diffuse(SHAPE, 21);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    (context, cache, seq, data)
}

#[track_caller]
fn assert_error<T: std::fmt::Debug>(result: Result<T, Error>, status: Status, words: &[&str]) {
    let error = result.expect_err("the call should have failed");
    assert_eq!(error.status(), status, "message: {}", error.message());
    for word in words {
        assert!(error.message().contains(word), "message {:?} does not name {word:?}", error.message());
    }
    // Display carries both the message and the library's name of the status.
    let shown = error.to_string();
    assert!(shown.contains(error.message()) && shown.contains(&status.name()), "{shown}");
}

#[test]
fn status_names_come_from_the_library() {
    assert_eq!(Status::CacheFull.name(), "SR_ERR_CACHE_FULL");
    assert_eq!(Status::from_raw(sinkrouter::sys::SR_OK), None);
    assert_eq!(Status::from_raw(sinkrouter::sys::SR_ERR_UNKNOWN_SEQUENCE), Some(Status::UnknownSequence));
    assert_eq!(Status::from_raw(999), Some(Status::Unknown(999)));
    assert_eq!(Status::OutOfRange.raw(), sinkrouter::sys::SR_ERR_OUT_OF_RANGE);
}

#[test]
fn layer_out_of_range() {
    let (_context, cache, seq, data) = setup();
    let row = SHAPE.token_elements();
    assert_error(cache.append(seq, 1, &data.k[..row], &data.v[..row]), Status::OutOfRange, &["layer = 1"]);
    assert_error(cache.append(seq, -1, &data.k[..row], &data.v[..row]), Status::OutOfRange, &["layer = -1"]);
    assert_error(cache.length(seq, 3), Status::OutOfRange, &["layer = 3"]);
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);
}

#[test]
fn unknown_and_removed_sequences() {
    let (context, cache, seq, data) = setup();
    let unknown = SeqId(987_654);
    assert_error(cache.length(unknown, 0), Status::UnknownSequence, &["987654"]);
    assert_error(cache.fork(unknown), Status::UnknownSequence, &["987654"]);
    assert_error(cache.remove(unknown), Status::UnknownSequence, &["987654"]);
    let row = SHAPE.token_elements();
    assert_error(cache.append(unknown, 0, &data.k[..row], &data.v[..row]), Status::UnknownSequence, &["987654"]);

    cache.remove(seq).unwrap();
    let mut out = vec![0f32; data.q.len()];
    let seqs = [seq];
    let step = DecodeStep::new(0, &seqs, SHAPE.q_heads() as i32, &data.q, &mut out);
    assert_error(
        context.decode(&cache, step, &DecodeOptions::new().unwrap()),
        Status::UnknownSequence,
        &[&seq.0.to_string()],
    );
}

#[test]
fn read_outside_the_sequence() {
    let (_context, cache, seq, _data) = setup();
    let mut k = vec![0f32; 10 * SHAPE.token_elements()];
    assert_error(cache.read(seq, 0, 35, Some(&mut k), None), Status::OutOfRange, &["[35, 45)", "40 tokens"]);
    assert_error(cache.read::<f32>(seq, 0, 0, None, None), Status::InvalidArgument, &["k_out", "v_out"]);
    assert_error(cache.truncate(seq, 41), Status::OutOfRange, &["new_length = 41"]);
}

#[test]
fn slices_of_the_wrong_length_are_refused_before_the_call() {
    let (context, cache, seq, data) = setup();
    let row = SHAPE.token_elements();
    assert_error(
        cache.append(seq, 0, &data.k[..row + 1], &data.v[..row + 1]),
        Status::InvalidArgument,
        &["k holds 129"],
    );
    assert_error(cache.append(seq, 0, &data.k[..row], &data.v[..2 * row]), Status::InvalidArgument, &["v holds 256"]);
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);

    let heads = SHAPE.q_heads() as i32;
    let options = DecodeOptions::new().unwrap();
    let mut out = vec![0f32; data.q.len()];
    let mut short_out = vec![0f32; data.q.len() - 1];
    let mut per_head = vec![0f32; SHAPE.q_heads() + 1];
    let short_q = &data.q[..data.q.len() - 1];
    assert_error(
        context.decode(&cache, DecodeStep::new(0, &[seq], heads, short_q, &mut out), &options),
        Status::InvalidArgument,
        &["q holds 255", "needs 256"],
    );
    assert_error(
        context.decode(&cache, DecodeStep::new(0, &[seq], heads, &data.q, &mut short_out), &options),
        Status::InvalidArgument,
        &["out holds 255"],
    );
    assert_error(
        context.decode(
            &cache,
            DecodeStep::new(0, &[seq], heads, &data.q, &mut out).head_error_bound(&mut per_head),
            &options,
        ),
        Status::InvalidArgument,
        &["head_error_bound holds 5", "needs 4"],
    );
    assert_error(
        context.decode(
            &cache,
            DecodeStep::new(0, &[seq], heads, &data.q, &mut out).head_skipped_mass(&mut per_head),
            &options,
        ),
        Status::InvalidArgument,
        &["head_skipped_mass"],
    );
    assert_error(
        context.decode(&cache, DecodeStep::new(0, &[seq], heads, &data.q, &mut out).lse(&mut per_head), &options),
        Status::InvalidArgument,
        &["lse holds 5", "needs 4"],
    );
    let short_sinks = [0f32; 3];
    assert_error(
        context.decode(
            &cache,
            DecodeStep::new(0, &[seq], heads, &data.q, &mut out).sink_logits(&short_sinks),
            &options,
        ),
        Status::InvalidArgument,
        &["sink_logits holds 3", "num_q_heads 4 needs 4"],
    );
}

#[test]
fn attention_variant_options_the_library_rejects_write_nothing() {
    let (context, cache, seq, data) = setup();
    let defaults = DecodeOptions::new().unwrap();
    let heads = SHAPE.q_heads();
    let no_sinks = [f32::NEG_INFINITY; 4];
    let cases: [(DecodeOptions, &[f32], Status, &[&str]); 8] = [
        (DecodeOptions { window_left: -2, ..defaults }, &no_sinks, Status::OutOfRange, &["window_left = -2"]),
        (DecodeOptions { logit_soft_cap: -1.0, ..defaults }, &no_sinks, Status::OutOfRange, &["logit_soft_cap = -1"]),
        (
            DecodeOptions { logit_soft_cap: f32::INFINITY, ..defaults },
            &no_sinks,
            Status::OutOfRange,
            &["logit_soft_cap"],
        ),
        (DecodeOptions { logit_soft_cap: f32::NAN, ..defaults }, &no_sinks, Status::OutOfRange, &["logit_soft_cap"]),
        (
            DecodeOptions { window_sink_tokens: 4, ..defaults },
            &no_sinks,
            Status::InvalidArgument,
            &["window_sink_tokens = 4", "window_left"],
        ),
        (
            DecodeOptions { window_left: 8, window_sink_tokens: -1, ..defaults },
            &no_sinks,
            Status::OutOfRange,
            &["window_sink_tokens = -1"],
        ),
        (defaults, &[0.0, f32::NAN, 0.0, 0.0], Status::InvalidArgument, &["sink_logits[1] = nan"]),
        (defaults, &[0.0, 0.0, 0.0, f32::INFINITY], Status::InvalidArgument, &["sink_logits[3] = inf"]),
    ];
    for (options, sinks, status, words) in cases {
        let mut out = vec![f32::NAN; data.q.len()];
        let mut lse = vec![f32::NAN; heads];
        let seqs = [seq];
        let step = DecodeStep::new(0, &seqs, heads as i32, &data.q, &mut out).lse(&mut lse).sink_logits(sinks);
        assert_error(context.decode(&cache, step, &options), status, words);
        assert!(out.iter().chain(&lse).all(|x| x.is_nan()), "a rejected step wrote its output: {options:?}");
    }
}

#[test]
fn merge_arguments_the_library_rejects() {
    let context = cpu_context();
    let (out, lse) = (vec![1f32; 4 * 64], vec![0f32; 4]);
    let state = AttentionState::new(&out[..], &lse[..]);
    let mut merged = vec![f32::NAN; 4 * 64];
    let mut merged_lse = vec![f32::NAN; 4];
    let no_states: [AttentionState; 0] = [];
    assert_error(
        context.merge_attention_states(MergeStep::new(64, &no_states, &mut merged)),
        Status::OutOfRange,
        &["num_states = 0"],
    );
    let too_many = vec![state; 65];
    assert_error(
        context.merge_attention_states(MergeStep::new(64, &too_many, &mut merged).lse(&mut merged_lse)),
        Status::OutOfRange,
        &["num_states = 65"],
    );
    assert!(merged.iter().chain(&merged_lse).all(|x| x.is_nan()), "a rejected merge wrote its output");
    assert_error(
        context.merge_attention_states(MergeStep::new(0, &[state], &mut merged)),
        Status::OutOfRange,
        &["head_dim = 0"],
    );
    let empty = AttentionState::new(&out[..0], &lse[..0]);
    assert_error(
        context.merge_attention_states(MergeStep::new(64, &[empty], &mut merged[..0])),
        Status::OutOfRange,
        &["rows = 0"],
    );
}

#[test]
fn merge_slices_of_the_wrong_length_are_refused_before_the_call() {
    let context = cpu_context();
    let (out, lse) = (vec![1f32; 4 * 64], vec![0f32; 4]);
    let state = AttentionState::new(&out[..], &lse[..]);
    let mut merged = vec![0f32; 4 * 64];
    let mut short = vec![0f32; 3];
    let merge = |states: &[AttentionState], merged: &mut [f32]| {
        context.merge_attention_states(MergeStep::new(64, states, merged))
    };
    assert_error(
        merge(&[state, AttentionState::new(&out[..3 * 64], &lse[..])], &mut merged),
        Status::InvalidArgument,
        &["states[1].out holds 192", "needs 256"],
    );
    assert_error(
        merge(&[state, AttentionState::new(&out[..], &lse[..3])], &mut merged),
        Status::InvalidArgument,
        &["states[1].lse holds 3", "rows 4"],
    );
    assert_error(
        merge(&[state.bound(&lse[..2]), state], &mut merged),
        Status::InvalidArgument,
        &["states[0].bound holds 2", "needs 4"],
    );
    assert_error(merge(&[state], &mut merged[..100]), Status::InvalidArgument, &["out holds 100", "head_dim 64"]);
    assert_error(
        context.merge_attention_states(MergeStep::new(64, &[state], &mut merged).lse(&mut short)),
        Status::InvalidArgument,
        &["lse holds 3", "needs 4"],
    );
    assert_error(
        context.merge_attention_states(MergeStep::new(64, &[state], &mut merged).bound(&mut short)),
        Status::InvalidArgument,
        &["bound holds 3", "needs 4"],
    );
}

#[test]
fn decode_arguments_the_library_rejects() {
    let (context, cache, seq, data) = setup();
    let mut out = vec![0f32; data.q.len()];
    let defaults = DecodeOptions::new().unwrap();
    let mut decode = |layer: i32, seqs: &[SeqId], heads: i32, options: DecodeOptions| {
        let q = &data.q[..seqs.len() * heads.max(0) as usize * SHAPE.head_dim];
        let out = &mut out[..q.len()];
        context.decode(&cache, DecodeStep::new(layer, seqs, heads, q, out), &options)
    };
    assert_error(decode(2, &[seq], 4, defaults), Status::OutOfRange, &["layer = 2"]);
    assert_error(decode(0, &[], 4, defaults), Status::OutOfRange, &["batch = 0"]);
    assert_error(decode(0, &[seq], 3, defaults), Status::InvalidArgument, &["num_q_heads = 3"]);
    assert_error(decode(0, &[seq], 0, defaults), Status::InvalidArgument, &["num_q_heads = 0"]);
    let no_budget = DecodeOptions { routing: RoutingMode::Budget, error_budget: 0.0, ..defaults };
    assert_error(decode(0, &[seq], 4, no_budget), Status::OutOfRange, &["error_budget"]);
    let no_tau = DecodeOptions { routing: RoutingMode::Tau, tau: 0.0, ..defaults };
    assert_error(decode(0, &[seq], 4, no_tau), Status::OutOfRange, &["tau"]);
    let no_anchor = DecodeOptions { routing: RoutingMode::Tau, sink_tokens: 0, window_tokens: 0, ..defaults };
    assert_error(decode(0, &[seq], 4, no_anchor), Status::InvalidArgument, &["sink_tokens", "window_tokens"]);
    let bad_scale = DecodeOptions { scale: f32::NAN, ..defaults };
    assert_error(decode(0, &[seq], 4, bad_scale), Status::InvalidArgument, &["scale"]);

    let empty = cache.add_sequence().unwrap();
    assert_error(decode(0, &[empty], 4, defaults), Status::InvalidArgument, &["holds no tokens"]);
}

#[test]
fn route_from_tokens_below_minus_one_is_rejected_and_writes_nothing() {
    let (context, cache, seq, data) = setup();
    let mut out = vec![f32::NAN; data.q.len()];
    let options = DecodeOptions {
        routing: RoutingMode::Budget,
        error_budget: 1e-2,
        route_from_tokens: -2,
        ..DecodeOptions::new().unwrap()
    };
    let seqs = [seq];
    let step = DecodeStep::new(0, &seqs, SHAPE.q_heads() as i32, &data.q, &mut out);
    assert_error(context.decode(&cache, step, &options), Status::OutOfRange, &["route_from_tokens = -2"]);
    assert!(out.iter().all(|x| x.is_nan()), "a rejected step wrote its output");
}

#[test]
fn a_full_pool_appends_nothing() {
    let (_context, cache, seq, data) = setup();
    let before: Pages = cache.pages().unwrap();
    let tokens = 30; // 40 tokens hold 3 pages of 16, 70 need 5; the pool has 4
    let part = tokens * SHAPE.token_elements();
    assert_error(
        cache.append(seq, 0, &data.k[..part], &data.v[..part]),
        Status::CacheFull,
        &["needs 2 free pages", "has 1 left of 4"],
    );
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);
    assert_eq!(cache.pages().unwrap(), before);
}

#[test]
fn bad_cache_and_context_options() {
    let context = cpu_context();
    let with = |change: fn(&mut KvCacheOptions)| {
        let mut options = KvCacheOptions::new(1, 2, 64).unwrap();
        change(&mut options);
        KvCache::new(&context, &options)
    };
    assert_error(with(|o| o.head_dim = 100), Status::Unsupported, &["head_dim = 100"]);
    assert_error(with(|o| o.page_tokens = 8), Status::Unsupported, &["page_tokens = 8"]);
    assert_error(with(|o| o.num_layers = 0), Status::OutOfRange, &["num_layers = 0"]);
    assert_error(with(|o| o.capacity_tokens = 0), Status::OutOfRange, &["capacity_tokens = 0"]);
    assert_error(with(|o| o.max_q_heads = 3), Status::InvalidArgument, &["max_q_heads = 3"]);

    let bad_threads = ContextOptions { backend: Backend::Cpu, num_threads: -1, ..ContextOptions::new().unwrap() };
    assert_error(Context::with_options(&bad_threads), Status::OutOfRange, &["num_threads = -1"]);
    let bad_device = ContextOptions { backend: Backend::Cpu, device_index: 1, ..ContextOptions::new().unwrap() };
    assert_error(Context::with_options(&bad_device), Status::OutOfRange, &["device_index = 1"]);
}
