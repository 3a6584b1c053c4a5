"""Routed decode on a sink-structured context: it skips, the certified bound holds, the budget
is never exceeded, and routing that may skip nothing gives the dense result bit for bit."""
from __future__ import annotations

import math

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache
from sinkrouter.decode import decode_args
from sinkrouter.testing import attention_reference, relative_error, sink_structured_context

KV_HEADS, GROUP, LENGTH = 2, 4, 4096


@pytest.fixture(params=[sr.DType.F32, sr.DType.BF16], ids=["f32", "bf16"])
def sink_cache(context, request):
    """(cache, [seq], q, float64 reference) for two sink-structured sequences."""
    with make_cache(context, num_layers=1, num_kv_heads=KV_HEADS, head_dim=128, dtype=request.param,
                    capacity_tokens=2 * LENGTH) as cache:
        ids, queries, expected = [], [], []
        for seed in (1, 2):
            k, v, q = sink_structured_context(LENGTH, KV_HEADS, GROUP, 128, seed=seed)
            seq = cache.add_sequence()
            cache.append(seq, 0, k, v)
            ids.append(seq)
            queries.append(q[0])
            expected.append(attention_reference(*cache.read(seq, 0, dtype=sr.DType.F32), q[0]))
        yield cache, ids, np.stack(queries), np.stack(expected)


def routed(cache, ids, q, routing):
    mass = np.full(q.shape[:2], np.nan, dtype=np.float32)
    bound = np.full(q.shape[:2], np.nan, dtype=np.float32)
    cache.context.reset_stats()
    out = cache.decode(ids, 0, q, routing=routing, head_skipped_mass=mass, head_error_bound=bound, collect_stats=True)
    return out, mass, bound, cache.context.stats()


@pytest.mark.parametrize("routing", [
    sr.Routing(sr.RoutingMode.TAU, tau=12.0, error_budget=0.0),
    sr.Routing(sr.RoutingMode.TAU, tau=8.0, error_budget=0.0),
    sr.Routing(sr.RoutingMode.TAU, tau=12.0, error_budget=1e-2),
], ids=["tau12", "tau8", "tau12-capped"])
def test_tau_skips_and_the_bound_holds(sink_cache, routing):
    cache, ids, q, expected = sink_cache
    out, mass, bound, stats = routed(cache, ids, q, routing)
    error = relative_error(out, expected, axis=-1)
    assert stats.blocks_v_skipped > 0 and np.all(mass > 0)
    assert np.all(error <= bound + 1e-5), (error - bound).max()
    assert stats.steps == 1 and stats.heads == len(ids) * KV_HEADS * GROUP
    assert stats.max_skipped_mass == pytest.approx(mass.max(), rel=1e-6)
    assert stats.max_error_bound == pytest.approx(bound.max(), rel=1e-6)
    if routing.error_budget:
        assert np.all(bound <= routing.error_budget)


def test_tau_heads_over_the_cap_are_recomputed_exactly(sink_cache):
    cache, ids, q, _ = sink_cache
    dense = cache.decode(ids, 0, q)
    _, _, uncapped_bound, _ = routed(cache, ids, q, sr.Routing(sr.RoutingMode.TAU, tau=8.0, error_budget=0.0))
    assert uncapped_bound.min() > 0
    cap = 0.5 * float(uncapped_bound.min())  # below every head's bound: all must be recomputed
    out, mass, bound, stats = routed(cache, ids, q, sr.Routing(sr.RoutingMode.TAU, tau=8.0, error_budget=cap))
    assert stats.heads_recomputed == len(ids) * KV_HEADS * GROUP
    np.testing.assert_array_equal(out, dense)
    np.testing.assert_array_equal(mass, 0.0)
    np.testing.assert_array_equal(bound, 0.0)


@pytest.mark.parametrize("budget", [1e-3, 1e-2])
def test_budget_is_never_exceeded(sink_cache, budget):
    cache, ids, q, expected = sink_cache
    out, mass, bound, stats = routed(cache, ids, q, sr.Routing(sr.RoutingMode.BUDGET, error_budget=budget))
    error = relative_error(out, expected, axis=-1)
    assert stats.blocks_v_skipped > 0 and np.any(mass > 0)
    assert np.all(bound <= budget)
    assert np.all(error <= bound + 1e-5)
    assert np.all(error <= budget + 1e-5)


def test_routing_that_cannot_skip_equals_dense_exactly(sink_cache):
    cache, ids, q, _ = sink_cache
    dense = cache.decode(ids, 0, q)
    never_skips = sr.Routing(sr.RoutingMode.TAU, tau=math.inf, error_budget=0.0)
    for routing in (None, sr.Routing(sr.RoutingMode.OFF), never_skips):
        out, mass, bound, stats = routed(cache, ids, q, routing)
        np.testing.assert_array_equal(out, dense)
        np.testing.assert_array_equal(mass, 0.0)
        np.testing.assert_array_equal(bound, 0.0)
        assert stats.blocks_v_skipped == 0


def test_route_from_tokens_defaults_to_the_backends_threshold():
    args = decode_args(0, np.zeros(1, np.int64), 4, sr.Routing(), None, False, stream=0)
    assert sr.Routing().route_from_tokens is None and args.route_from_tokens == -1


def test_routed_steps_shorter_than_route_from_tokens_run_dense(sink_cache):
    """Shorter than route_from_tokens: the very bits of routing off, nothing skipped, bound 0,
    counted in steps_run_dense. At the threshold, and at -1 (the CPU's threshold is 0), it routes."""
    cache, ids, q, _ = sink_cache
    dense = cache.decode(ids, 0, q)
    out, mass, bound, stats = routed(cache, ids, q, sr.Routing(error_budget=1e-2, route_from_tokens=LENGTH + 1))
    np.testing.assert_array_equal(out.view(np.uint32), dense.view(np.uint32))
    np.testing.assert_array_equal(mass, 0.0)
    np.testing.assert_array_equal(bound, 0.0)
    assert stats.steps == 1 and stats.steps_run_dense == 1, stats
    assert stats.blocks_v_skipped == 0 and stats.max_skipped_mass == 0 and stats.max_error_bound == 0, stats
    for route_from_tokens in (LENGTH, -1):
        out, mass, bound, stats = routed(cache, ids, q, sr.Routing(error_budget=1e-2, route_from_tokens=route_from_tokens))
        assert stats.steps_run_dense == 0 and stats.blocks_v_skipped > 0 and np.any(mass > 0), stats
        assert np.all(bound <= 1e-2)


def test_random_keys_leave_nothing_to_skip(context, rng):
    with make_cache(context, num_layers=1, head_dim=128, capacity_tokens=LENGTH) as cache:
        seq = cache.add_sequence()
        shape = (LENGTH, 2, 128)
        keys, values = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
        cache.append(seq, 0, keys, values)
        q = rng.standard_normal((1, 8, 128)).astype(np.float32)
        _, mass, _, stats = routed(cache, [seq], q, sr.Routing(sr.RoutingMode.TAU, tau=12.0, error_budget=0.0))
        assert stats.blocks_total > 0 and stats.blocks_v_skipped == 0
        np.testing.assert_array_equal(mass, 0.0)


def test_stats_add_up_and_reset(sink_cache):
    cache, ids, q, _ = sink_cache
    context = cache.context
    context.reset_stats()
    assert context.stats() == sr.DecodeStats(0, 0, 0, 0, 0, 0.0, 0.0, 0)
    routing = sr.Routing(error_budget=1e-2)
    for _ in range(3):
        cache.decode(ids, 0, q, routing=routing, collect_stats=True)
    cache.decode(ids, 0, q, routing=routing)  # not collected
    stats = context.stats()
    assert stats.steps == 3 and stats.heads == 3 * len(ids) * KV_HEADS * GROUP
    assert 0 < stats.v_skip_fraction < 1
    context.reset_stats()
    assert context.stats().steps == 0
