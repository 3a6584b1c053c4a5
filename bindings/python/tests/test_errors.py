"""Bad arguments: the library's checks surface as SinkRouterError with the C status and the C
message (which names the argument); buffer mistakes the C side cannot see are caught here
before any pointer is passed. A failed call changes nothing."""
from __future__ import annotations

import contextlib
import math

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


@pytest.mark.parametrize("options,status,words", [
    (dict(window_left=-2), S.OUT_OF_RANGE, "window_left = -2"),
    (dict(logit_soft_cap=-1.0), S.OUT_OF_RANGE, "logit_soft_cap = -1"),
    (dict(logit_soft_cap=math.inf), S.OUT_OF_RANGE, "logit_soft_cap = inf"),
    (dict(logit_soft_cap=math.nan), S.OUT_OF_RANGE, "logit_soft_cap = nan"),
    (dict(window_sink_tokens=4), S.INVALID_ARGUMENT, "window_sink_tokens = 4 needs a sliding window"),
    (dict(window_left=8, window_sink_tokens=-1), S.OUT_OF_RANGE, "window_sink_tokens = -1"),
    (dict(sink_logits=[0.0, math.nan, 0.0, 0.0]), S.INVALID_ARGUMENT, "sink_logits[1] = nan"),
    (dict(sink_logits=[0.0, 0.0, 0.0, math.inf]), S.INVALID_ARGUMENT, "sink_logits[3] = inf"),
], ids=["window_left", "soft_cap-negative", "soft_cap-inf", "soft_cap-nan", "kept-tokens-without-window",
        "kept-tokens-negative", "sink-nan", "sink-inf"])
def test_attention_variant_options_write_nothing(cache, seq, options, status, words):
    out = np.full((1, 4, 64), np.nan, dtype=np.float32)
    lse = np.full((1, 4), np.nan, dtype=np.float32)
    with raises_c_error(status, words):
        cache.decode(seq, 0, q_for(1), out, lse=lse, **options)
    assert np.all(np.isnan(out)) and np.all(np.isnan(lse))


def test_merge_arguments_the_library_rejects(context):
    state = (np.ones((1, 4, 64), np.float32), np.zeros((1, 4), np.float32))
    with raises_c_error(S.OUT_OF_RANGE, "num_states = 0"):
        context.merge_attention_states([])
    with raises_c_error(S.OUT_OF_RANGE, "rows = 0"):
        context.merge_attention_states([(np.ones((0, 4, 64), np.float32), np.zeros((0, 4), np.float32))])
    lse, bound = np.full((1, 4), np.nan, np.float32), np.full((1, 4), np.nan, np.float32)
    out = np.full((1, 4, 64), np.nan, np.float32)
    with raises_c_error(S.OUT_OF_RANGE, "num_states = 65"):
        context.merge_attention_states([state] * 65, out, lse=lse, bound=bound)
    assert np.all(np.isnan(out)) and np.all(np.isnan(lse)) and np.all(np.isnan(bound))


def test_merge_buffer_mistakes_are_caught_before_the_call(context):
    out, lse = np.ones((2, 4, 64), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"states\[1\].lse has shape \(2, 3\), expected \(2, 4\)"):
        context.merge_attention_states([(out, lse), (out, lse[:, :3])])
    with pytest.raises(ValueError, match=r"states\[1\].out has shape \(2, 4, 32\)"):
        context.merge_attention_states([(out, lse), (out[:, :, :32], lse)])
    with pytest.raises(ValueError, match=r"states\[0\].bound has shape \(4,\)"):
        context.merge_attention_states([(out, lse, lse[0]), (out, lse)])
    with pytest.raises(TypeError, match=r"states\[1\].out has dtype float16"):
        context.merge_attention_states([(out, lse), (out.astype(np.float16), lse)])
    with pytest.raises(TypeError, match=r"states\[0\].out has dtype float64"):
        context.merge_attention_states([(out.astype(np.float64), lse)])
    with pytest.raises(ValueError, match=r"states\[0\] has 1 items"):
        context.merge_attention_states([(out,)])
    with pytest.raises(ValueError, match=r"states\[0\].out has shape \(64,\)"):
        context.merge_attention_states([(out[0, 0], lse[0, 0])])
    with pytest.raises(ValueError, match=r"^lse has shape \(2,\), expected \(2, 4\)"):
        context.merge_attention_states([(out, lse)], lse=np.empty(2, np.float32))
    with pytest.raises(TypeError, match="bound has dtype float64"):
        context.merge_attention_states([(out, lse)], bound=np.empty((2, 4)))
    with pytest.raises(ValueError, match="FP8_E4M3 is a cache element type only"):
        context.merge_attention_states([(out, lse)], out_dtype=sr.DType.FP8_E4M3)
    with pytest.raises(ValueError, match=r"^out has shape \(2, 4, 32\)"):
        context.merge_attention_states([(out, lse)], np.empty((2, 4, 32), np.float32))


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
    with pytest.raises(ValueError, match=r"lse has shape \(1, 3\), expected \(1, 4\)"):
        cache.decode(seq, 0, q_for(1), lse=np.empty((1, 3), np.float32))
    with pytest.raises(TypeError, match="lse has dtype float64"):
        cache.decode(seq, 0, q_for(1), lse=np.empty((1, 4)))
    with pytest.raises(ValueError, match=r"sink_logits has shape \(3,\), expected \(4,\) \(\[num_q_heads\]\)"):
        cache.decode(seq, 0, q_for(1), sink_logits=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="sink_logits has dtype <U1"):
        cache.decode(seq, 0, q_for(1), sink_logits=list("abcd"))
    with pytest.raises(OverflowError, match="window_left = 4294967296"):
        cache.decode(seq, 0, q_for(1), window_left=2**32)
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
