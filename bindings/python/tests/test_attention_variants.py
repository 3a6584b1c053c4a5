"""Attention variants of a decode step (learned sink logits, lse out, sliding window with kept
first tokens, logit soft cap) against float64 attention over the K/V read back from the cache,
and merge_attention_states: shards of a sequence decoded apart and merged equal the whole."""
from __future__ import annotations

import math

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache
from sinkrouter.testing import relative_error, sink_structured_context

KV_HEADS, GROUP, HEAD_DIM = 2, 2, 64
Q_HEADS = KV_HEADS * GROUP
TOLERANCE = {sr.DType.F32: 1e-5, sr.DType.BF16: 1e-2}
SINKS = np.array([0.5, -np.inf, 2.0, -1.0], dtype=np.float32)  # one head without a sink


def variant_reference(k, v, q, *, sinks=None, window_left=-1, window_sink_tokens=0, soft_cap=0.0, scale=None):
    """float64 (out [q_heads][head_dim], lse [q_heads]) of one sequence, k and v
    [n][kv_heads][head_dim], q [q_heads][head_dim], written from the header's definitions: the
    attended tokens are the last window_left + 1 and the first window_sink_tokens (every token
    without a window); s = scale q.k, then cap * tanh(s / cap); exp(sink) joins the
    denominator with no value; lse = log of the whole denominator."""
    k, v, q = (np.asarray(a, dtype=np.float64) for a in (k, v, q))
    n, num_kv_heads, head_dim = k.shape
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    tokens = np.arange(n)
    if window_left >= 0:
        window_begin = max(0, n - 1 - window_left)
        tokens = tokens[(tokens < min(window_sink_tokens, window_begin)) | (tokens >= window_begin)]
    group = q.shape[0] // num_kv_heads
    out, lse = np.zeros_like(q), np.zeros(q.shape[0])
    for h in range(q.shape[0]):
        logits = scale * (k[tokens, h // group] @ q[h])
        if soft_cap > 0:
            logits = soft_cap * np.tanh(logits / soft_cap)
        sink = -np.inf if sinks is None else float(sinks[h])
        m = max(logits.max(), sink)
        weights = np.exp(logits - m)
        denominator = weights.sum() + (math.exp(sink - m) if sink > -np.inf else 0.0)
        out[h] = weights @ v[tokens, h // group] / denominator
        lse[h] = m + math.log(denominator)
    return out, lse


def fill(cache, rng, lengths):
    """One sequence per length of Gaussian K/V; returns the ids."""
    ids = []
    for length in lengths:
        seq = cache.add_sequence()
        shape = (length, cache.num_kv_heads, cache.head_dim)
        cache.append(seq, 0, rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32))
        ids.append(seq)
    return ids


def assert_lse_close(actual, expected, tolerance=1e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert np.all(np.abs(actual - expected) <= tolerance * np.maximum(1.0, np.abs(expected))), (actual, expected)


VARIANTS = {
    "combined": dict(sinks=SINKS, window_left=40, window_sink_tokens=4, soft_cap=2.5),
    "window-only": dict(window_left=31),
    "window-kept-tokens": dict(window_left=15, window_sink_tokens=20),
    "window-wider-than-the-sequences": dict(window_left=5000, window_sink_tokens=3),
    "window-of-one-token": dict(sinks=SINKS, window_left=0),
    "sinks-only": dict(sinks=SINKS),
    "soft-cap-only": dict(soft_cap=1.0),
}


@pytest.mark.parametrize("dtype", [sr.DType.F32, sr.DType.BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_match_float64(context, rng, dtype, variant):
    lengths = [1, 30, 77, 300]  # shorter and longer than the windows, most not whole pages
    with make_cache(context, num_layers=1, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM, dtype=dtype,
                    capacity_tokens=1024) as cache:
        ids = fill(cache, rng, lengths)
        q = (1.5 * rng.standard_normal((len(ids), Q_HEADS, HEAD_DIM))).astype(np.float32)
        out = np.full(q.shape, np.nan, np.float32)  # poisoned: an unwritten row fails
        lse = np.full((len(ids), Q_HEADS), np.nan, np.float32)
        assert cache.decode(ids, 0, q, out, lse=lse, sink_logits=variant.get("sinks"),
                            window_left=variant.get("window_left"),
                            window_sink_tokens=variant.get("window_sink_tokens"),
                            logit_soft_cap=variant.get("soft_cap")) is out
        for b, seq in enumerate(ids):
            k, v = cache.read(seq, 0, dtype=sr.DType.F32)
            expected_out, expected_lse = variant_reference(k, v, q[b], **variant)
            error = relative_error(out[b], expected_out, axis=-1)
            assert np.all(error < TOLERANCE[dtype]), (lengths[b], error)
            assert_lse_close(lse[b], expected_lse)


def test_variants_change_the_result(context, rng):
    """The options reach the library: each one alone moves the output away from plain attention."""
    with make_cache(context, num_layers=1, capacity_tokens=512) as cache:
        ids = fill(cache, rng, [200])
        q = (1.5 * rng.standard_normal((1, Q_HEADS, 64))).astype(np.float32)
        plain_lse = np.empty((1, Q_HEADS), np.float32)
        plain = cache.decode(ids, 0, q, lse=plain_lse)
        k, v = cache.read(ids[0], 0, dtype=sr.DType.F32)
        assert_lse_close(plain_lse[0], variant_reference(k, v, q[0])[1])
        for options in (dict(sink_logits=SINKS), dict(window_left=10), dict(logit_soft_cap=1.0)):
            assert relative_error(cache.decode(ids, 0, q, **options), plain) > 1e-3, options
        # -inf everywhere is no sink at all: the very bits of plain attention.
        no_sinks = cache.decode(ids, 0, q, sink_logits=np.full(Q_HEADS, -np.inf))
        np.testing.assert_array_equal(no_sinks, plain)


def test_sink_logits_take_lists_and_other_float_types(context, rng):
    with make_cache(context, num_layers=1, capacity_tokens=256) as cache:
        ids = fill(cache, rng, [50])
        q = rng.standard_normal((1, Q_HEADS, 64)).astype(np.float32)
        expected = cache.decode(ids, 0, q, sink_logits=SINKS)
        np.testing.assert_array_equal(cache.decode(ids, 0, q, sink_logits=SINKS.tolist()), expected)
        np.testing.assert_array_equal(cache.decode(ids, 0, q, sink_logits=SINKS.astype(np.float64)), expected)


def test_routed_variants_stay_within_the_bound_and_lse_is_exact(context):
    """Routing with a sink logit and a window: the certified bound holds and lse counts the
    skipped logits too, so it matches the float64 reference."""
    length, group = 4096, 4
    k, v, q = sink_structured_context(length, KV_HEADS, group, 128, seed=3)
    sinks = np.array([-1.0, 0.5, -np.inf, 1.0, 0.0, -2.0, 3.0, -0.5], np.float32)
    options = dict(window_left=3000, window_sink_tokens=8, logit_soft_cap=30.0)
    with make_cache(context, num_layers=1, head_dim=128, capacity_tokens=length) as cache:
        seq = cache.add_sequence()
        cache.append(seq, 0, k, v)
        bound = np.full((1, 8), np.nan, np.float32)
        lse = np.full((1, 8), np.nan, np.float32)
        context.reset_stats()
        out = cache.decode(seq, 0, q, routing=sr.Routing(error_budget=1e-2), head_error_bound=bound, lse=lse,
                           sink_logits=sinks, collect_stats=True, **options)
        assert context.stats().blocks_v_skipped > 0
        expected_out, expected_lse = variant_reference(*cache.read(seq, 0), q[0], sinks=sinks, window_left=3000,
                                                       window_sink_tokens=8, soft_cap=30.0)
        error = relative_error(out[0], expected_out, axis=-1)
        assert np.all(bound <= 1e-2) and np.all(error <= bound[0] + 1e-5), (error, bound)
        assert_lse_close(lse[0], expected_lse)


def shard_and_whole(cache, k, v, cuts):
    """The whole sequence, and its shards [0, cuts[0]), [cuts[0], cuts[1]), ... each appended
    as its own sequence; returns (whole id, shard ids)."""
    whole = cache.add_sequence()
    cache.append(whole, 0, k, v)
    shards = []
    for begin, end in zip([0] + cuts, cuts + [len(k)]):
        seq = cache.add_sequence()
        cache.append(seq, 0, k[begin:end], v[begin:end])
        shards.append(seq)
    return whole, shards


@pytest.mark.parametrize("cuts", [[700], [100, 613], [1, 2]], ids=["2-shards", "3-shards", "1-token-shards"])
def test_merged_shards_equal_the_whole_sequence(context, rng, cuts):
    n, batch = 1000, 2
    with make_cache(context, num_layers=1, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                    capacity_tokens=4 * (n + 16 * 4)) as cache:
        wholes, shard_ids = [], []
        for _ in range(batch):
            shape = (n, KV_HEADS, HEAD_DIM)
            k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
            whole, shards = shard_and_whole(cache, k, v, cuts)
            wholes.append(whole)
            shard_ids.append(shards)
        q = (1.5 * rng.standard_normal((batch, Q_HEADS, HEAD_DIM))).astype(np.float32)
        whole_lse = np.empty((batch, Q_HEADS), np.float32)
        whole_out = cache.decode(wholes, 0, q, lse=whole_lse, sink_logits=SINKS, logit_soft_cap=3.0)

        states = []
        for i in range(len(cuts) + 1):
            lse = np.full((batch, Q_HEADS), np.nan, np.float32)
            # The learned sink belongs to one state only: here the last shard's.
            sinks = SINKS if i == len(cuts) else None
            out = cache.decode([shards[i] for shards in shard_ids], 0, q, lse=lse, sink_logits=sinks,
                               logit_soft_cap=3.0)
            states.append((out, lse))
        merged = context.merge_attention_states(states)
        assert isinstance(merged, sr.AttentionState)
        assert merged.out.shape == q.shape and merged.out.dtype == np.float32
        assert np.all(relative_error(merged.out, whole_out, axis=-1) < 1e-5)
        assert_lse_close(merged.lse, whole_lse)
        np.testing.assert_array_equal(merged.bound, 0.0)  # exact states merge into an exact state

        # Merging is associative: the first two merged, then with the rest.
        partial = context.merge_attention_states(states[:2])
        again = context.merge_attention_states([partial] + states[2:])
        assert np.all(relative_error(again.out, whole_out, axis=-1) < 1e-5)
        assert_lse_close(again.lse, whole_lse)


def test_merge_writes_given_arrays_in_place_and_other_dtypes(context, rng):
    with make_cache(context, num_layers=1, capacity_tokens=1024) as cache:
        k, v = (rng.standard_normal((300, 2, 64)).astype(np.float32) for _ in range(2))
        whole, shards = shard_and_whole(cache, k, v, [120])
        q = rng.standard_normal((1, Q_HEADS, 64)).astype(np.float32)
        whole_lse = np.empty((1, Q_HEADS), np.float32)
        whole_out = cache.decode(whole, 0, q, lse=whole_lse)
        outs, lses = [], []
        for seq in shards:
            lses.append(np.empty((1, Q_HEADS), np.float32))
            outs.append(cache.decode(seq, 0, q, lse=lses[-1]))

        # Into the first state's own arrays (the library allows out to be a state's output).
        merged_lse, merged_bound = np.empty((1, Q_HEADS), np.float32), np.full((1, Q_HEADS), np.nan, np.float32)
        merged = context.merge_attention_states(list(zip(outs, lses)), outs[0], lse=merged_lse, bound=merged_bound)
        assert merged.out is outs[0] and merged.lse is merged_lse and merged.bound is merged_bound
        assert relative_error(outs[0], whole_out) < 1e-5
        assert_lse_close(merged_lse, whole_lse)
        np.testing.assert_array_equal(merged_bound, 0.0)

        # f16 states in, bf16 out.
        f16_states = []
        for seq in shards:
            lse = np.empty((1, Q_HEADS), np.float32)
            f16_states.append(sr.AttentionState(cache.decode(seq, 0, q, lse=lse, out_dtype=sr.DType.F16), lse))
        bf16 = context.merge_attention_states(f16_states, out_dtype=sr.DType.BF16)
        assert bf16.out.dtype == np.uint16
        assert relative_error(sr.bf16_to_float32(bf16.out), whole_out) < 1e-2


def test_merged_bounds_of_routed_shards_hold(context):
    """Shards decoded with routing report bounds; the merged bound covers the merged error."""
    length, group = 4096, 4
    k, v, q = sink_structured_context(length, KV_HEADS, group, 128, seed=5)
    with make_cache(context, num_layers=1, head_dim=128, capacity_tokens=2 * length + 256) as cache:
        whole, shards = shard_and_whole(cache, k, v, [2500])
        dense = cache.decode(whole, 0, q)
        states = []
        for seq in shards:
            lse, bound = np.empty((1, 8), np.float32), np.empty((1, 8), np.float32)
            out = cache.decode(seq, 0, q, lse=lse, head_error_bound=bound,
                               routing=sr.Routing(sr.RoutingMode.TAU, tau=8.0, error_budget=0.0))
            states.append((out, lse, bound))
        assert any(np.any(state[2] > 0) for state in states), "routing skipped nothing: the test shows nothing"
        merged = context.merge_attention_states(states)
        error = relative_error(merged.out[0], dense[0], axis=-1)
        assert np.all(merged.bound > 0)
        assert np.all(error <= merged.bound[0] + 1e-5), (error, merged.bound)
        # A state without a bound is exact: its None entry reaches the library as NULL.
        exact_first = context.merge_attention_states([states[0][:2], states[1]])
        assert np.all(exact_first.bound <= merged.bound)
