"""Bad arguments: the library's checks surface as SinkRouterError with the C status and the C
message (which names the argument); buffer mistakes the C side cannot see are caught here
before any pointer is passed. A failed call changes nothing."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache, random_kv

S = sr.Status


@contextlib.contextmanager
def raises_c_error(status: sr.Status, words: str):
    """The block must raise SinkRouterError(status) whose C message holds `words`."""
    with pytest.raises(sr.SinkRouterError) as info:
        yield
    error = info.value
    assert error.status is status, error
    assert words in error.message, error.message
    assert str(error) == f"{status.name}: {error.message}"


@pytest.fixture
def cache(context):
    with make_cache(context, num_layers=2, capacity_tokens=64, page_tokens=16, max_batch=2) as cache:
        yield cache


@pytest.fixture
def seq(cache, rng):
    seq = cache.add_sequence()
    cache.append(seq, 0, *random_kv(rng, 20, 2, 64))
    return seq


def q_for(batch, heads=4, head_dim=64):
    return np.ones((batch, heads, head_dim), dtype=np.float32)


@pytest.mark.parametrize("options,status,words", [
    (dict(num_threads=-1), S.OUT_OF_RANGE, "num_threads = -1"),
    (dict(device_index=-2), S.OUT_OF_RANGE, "device_index = -2"),
    (dict(device_index=3), S.OUT_OF_RANGE, "device_index = 3"),
])
def test_context_options(options, status, words):
    with raises_c_error(status, words):
        sr.Context(sr.Backend.CPU, **options)


@pytest.mark.parametrize("options,status,words", [
    (dict(head_dim=96), S.UNSUPPORTED, "head_dim = 96"),
    (dict(page_tokens=20), S.UNSUPPORTED, "page_tokens = 20"),
    (dict(capacity_tokens=0), S.OUT_OF_RANGE, "capacity_tokens = 0"),
    (dict(num_layers=0), S.OUT_OF_RANGE, "num_layers = 0"),
    (dict(max_q_heads=3), S.INVALID_ARGUMENT, "max_q_heads = 3"),
])
def test_cache_options(context, options, status, words):
    with raises_c_error(status, words):
        make_cache(context, **options)


def test_sequence_calls(cache, seq):
    with raises_c_error(S.UNKNOWN_SEQUENCE, "sequence 12345"):
        cache.fork_sequence(12345)
    with raises_c_error(S.OUT_OF_RANGE, "new_length = 21"):
        cache.truncate_sequence(seq, 21)
    with raises_c_error(S.OUT_OF_RANGE, "layer = 2"):
        cache.sequence_length(seq, 2)
    cache.remove_sequence(seq)
    with raises_c_error(S.UNKNOWN_SEQUENCE, f"sequence {seq}"):
        cache.remove_sequence(seq)


def test_append_and_read(cache, seq, rng):
    k, v = random_kv(rng, 5, 2, 64)
    with raises_c_error(S.OUT_OF_RANGE, "layer = 2"):
        cache.append(seq, 2, k, v)
    with raises_c_error(S.UNKNOWN_SEQUENCE, "sequence 999"):
        cache.append(999, 0, k, v)
    with raises_c_error(S.INVALID_ARGUMENT, "n_tokens = 0"):
        cache.append(seq, 0, k[:0], v[:0])
    with raises_c_error(S.OUT_OF_RANGE, "tokens [15, 25)"):
        cache.read(seq, 0, first_token=15, n_tokens=10)
    with raises_c_error(S.INVALID_ARGUMENT, "n_tokens = 0"):
        cache.read(seq, 0, first_token=20)
    with raises_c_error(S.UNSUPPORTED, "io.memory = SR_MEMORY_DEVICE"):
        cache.append_device(seq, 0, 5, k.ctypes.data, v.ctypes.data)
    assert cache.sequence_length(seq, 0) == 20


def test_cache_full_appends_nothing(cache, seq, rng):
    before = cache.pages()
    k, v = random_kv(rng, 60, 2, 64)
    with raises_c_error(S.CACHE_FULL, "needs 3 free pages, but the pool has 2"):
        cache.append(seq, 0, k, v)
    assert cache.pages() == before
    assert cache.sequence_length(seq, 0) == 20


@pytest.mark.parametrize("routing,scale,status,words", [
    (sr.Routing(sr.RoutingMode.TAU, tau=-1.0), None, S.OUT_OF_RANGE, "tau = -1"),
    (sr.Routing(sr.RoutingMode.BUDGET, error_budget=0.0), None, S.OUT_OF_RANGE, "error_budget = 0"),
    (sr.Routing(sr.RoutingMode.BUDGET, sink_tokens=0, window_tokens=0), None, S.INVALID_ARGUMENT,
     "sink_tokens and window_tokens are both 0"),
    (sr.Routing(sr.RoutingMode.TAU, window_tokens=-3), None, S.OUT_OF_RANGE, "window_tokens = -3"),
    (None, -1.0, S.INVALID_ARGUMENT, "scale = -1"),
])
def test_decode_options(cache, seq, routing, scale, status, words):
    with raises_c_error(status, words):
        cache.decode(seq, 0, q_for(1), routing=routing, scale=scale)


def test_route_from_tokens_below_minus_one_writes_nothing(cache, seq):
    out = np.full((1, 4, 64), np.nan, dtype=np.float32)
    with raises_c_error(S.OUT_OF_RANGE, "route_from_tokens = -2"):
        cache.decode(seq, 0, q_for(1), out, routing=sr.Routing(error_budget=1e-2, route_from_tokens=-2))
    assert np.all(np.isnan(out))


def test_decode_batch_and_heads(cache, seq):
    with raises_c_error(S.INVALID_ARGUMENT, "num_q_heads = 3"):
        cache.decode(seq, 0, q_for(1, heads=3))
    with raises_c_error(S.OUT_OF_RANGE, "batch = 3"):
        cache.decode([seq, seq, seq], 0, q_for(3))
    with raises_c_error(S.OUT_OF_RANGE, "batch = 0"):
        cache.decode([], 0, q_for(0))
    with raises_c_error(S.INVALID_ARGUMENT, "holds no tokens at layer 1"):
        cache.decode(seq, 1, q_for(1))
    with raises_c_error(S.UNKNOWN_SEQUENCE, "sequence 77"):
        cache.decode([seq, 77], 0, q_for(2))
    with raises_c_error(S.INVALID_ARGUMENT, "args.q is NULL"):
        cache.decode_device([seq], 0, 4, 0, q_for(1).ctypes.data)


def test_buffer_mistakes_are_caught_before_the_call(cache, seq, rng):
    k, v = random_kv(rng, 5, 2, 64)
    with pytest.raises(ValueError, match=r"k has shape \(5, 2, 32\)"):
        cache.append(seq, 0, k[:, :, :32], v[:, :, :32])
    with pytest.raises(ValueError, match=r"v has shape \(4, 2, 64\)"):
        cache.append(seq, 0, k, v[:4])
    with pytest.raises(TypeError, match="uint16: pass dtype"):
        cache.append(seq, 0, k.view(np.uint16)[:, :, :64], v.view(np.uint16)[:, :, :64])
    with pytest.raises(TypeError, match="k has dtype float64"):
        cache.append(seq, 0, k.astype(np.float64), v.astype(np.float64))
    with pytest.raises(TypeError, match="v has float16"):
        cache.append(seq, 0, k, v.astype(np.float16))
    with pytest.raises(ValueError, match=r"q has shape \(1, 4, 128\)"):
        cache.decode(seq, 0, np.ones((1, 4, 128), np.float32))
    with pytest.raises(ValueError, match=r"q has shape \(1, 4, 64\), expected \(2, 4, 64\)"):
        cache.decode([seq, seq], 0, q_for(1))
    with pytest.raises(ValueError, match="out has shape"):
        cache.decode(seq, 0, q_for(1), out=np.empty((1, 4, 32), np.float32))
    read_only = np.empty((1, 4, 64), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        cache.decode(seq, 0, q_for(1), out=read_only)
    with pytest.raises(TypeError, match="head_error_bound has dtype float64"):
        cache.decode(seq, 0, q_for(1), head_error_bound=np.empty((1, 4)))
    with pytest.raises(ValueError, match="k_out has shape"):
        cache.read(seq, 0, k_out=np.empty((19, 2, 64), np.float32))
    with pytest.raises(OverflowError, match="layer = 4294967296"):
        cache.append(seq, 2**32, k, v)  # would wrap to layer 0 in an int32_t
    assert cache.sequence_length(seq, 0) == 20


def test_closed_objects_refuse_use(context):
    cache = make_cache(context)
    cache.close()
    with pytest.raises(ValueError, match="closed sinkrouter.KvCache"):
        cache.add_sequence()
    context.close()
    with pytest.raises(ValueError, match="closed sinkrouter.Context"):
        context.stats()
    with pytest.raises(ValueError, match="closed sinkrouter.Context"):
        make_cache(context)
