"""An FP8 E4M3 cache through the binding: float32 K/V in, float32 back within E4M3's rounding of
each row's scale, reads without a dtype, dense decode against float64 over what the cache holds,
and FP8 refused wherever it would be a buffer's type."""
from __future__ import annotations

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache, random_kv
from sinkrouter.testing import attention_reference, relative_error

KV_HEADS, GROUP, HEAD_DIM, TOKENS = 2, 4, 128, 300


def fp8_cache(context, head_dim=HEAD_DIM):
    return make_cache(context, num_layers=1, num_kv_heads=KV_HEADS, head_dim=head_dim, dtype=sr.DType.FP8_E4M3)


def assert_within_fp8_rounding(appended: np.ndarray, stored: np.ndarray) -> None:
    """E4M3 keeps 3 mantissa bits (2^-4 relative); its subnormal step is 2^-9 of the row's scale
    s = amax / 448 (half of it absolute). A row is one token's K (or V) of one kv-head."""
    x, y = appended.astype(np.float64), stored.astype(np.float64)
    s = np.abs(x).max(axis=-1, keepdims=True) / 448
    allowed = (2.0**-4 * np.abs(x) + 2.0**-10 * s) * (1 + 1e-6)
    excess = np.abs(y - x) - allowed
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, f"element {worst}: appended {x[worst]}, read back {y[worst]}, allowed {allowed[worst]}"


def test_fp8_dtype_is_a_one_byte_cache_type(context):
    assert sr.DType.FP8_E4M3 == 3
    assert sr.library().sr_dtype_size(sr.DType.FP8_E4M3) == 1
    with fp8_cache(context) as cache:
        assert cache.dtype == sr.DType.FP8_E4M3


def test_f32_round_trip_is_within_fp8_rounding(context, rng):
    with fp8_cache(context) as cache:
        seq = cache.add_sequence()
        k, v = random_kv(rng, TOKENS, KV_HEADS, HEAD_DIM)
        cache.append(seq, 0, k, v)
        k_back, v_back = cache.read(seq, 0)  # no array holds FP8: float32 by default
        assert k_back.dtype == np.float32 and k_back.shape == k.shape
        assert_within_fp8_rounding(k, k_back)
        assert_within_fp8_rounding(v, v_back)
        assert not np.array_equal(k_back, k), "an FP8 cache gave float32 K back exactly: it did not quantize"

        # The same stored values in other buffer types: explicit, or taken from the given array.
        k_f16, _ = cache.read(seq, 0, dtype=sr.DType.F16)
        np.testing.assert_array_equal(k_f16, k_back.astype(np.float16))
        k_into = np.empty(k.shape, dtype=np.float16)
        cache.read(seq, 0, k_out=k_into, v_out=np.empty(k.shape, dtype=np.float16))
        np.testing.assert_array_equal(k_into, k_f16)
        k_bf16, _ = cache.read(seq, 0, dtype=sr.DType.BF16)
        np.testing.assert_array_equal(k_bf16, sr.float32_to_bf16(k_back))


def test_dense_decode_matches_float64_over_the_stored_values(context, rng):
    with fp8_cache(context) as cache:
        seq = cache.add_sequence()
        cache.append(seq, 0, *random_kv(rng, TOKENS, KV_HEADS, HEAD_DIM))
        k, v = cache.read(seq, 0, dtype=sr.DType.F32)
        q = rng.standard_normal((1, KV_HEADS * GROUP, HEAD_DIM)).astype(np.float32)
        out = np.full(q.shape, np.nan, dtype=np.float32)  # poisoned: an unwritten row fails
        cache.decode([seq], 0, q, out)
        errors = relative_error(out[0], attention_reference(k, v, q[0]), axis=-1)
        assert errors.max() < 1e-4, f"relative error per q-head against float64 over the stored K/V: {errors}"


def test_fp8_is_refused_as_a_buffer_type(context, rng):
    with fp8_cache(context, head_dim=64) as cache:
        seq = cache.add_sequence()
        k, v = random_kv(rng, 4, KV_HEADS, 64)
        cache.append(seq, 0, k, v)

        # The library refuses an FP8 query (decode_device passes the dtype through unchecked).
        q = np.zeros((1, KV_HEADS, 64), dtype=np.uint8)
        out = np.full((1, KV_HEADS, 64), np.nan, dtype=np.float32)
        with pytest.raises(sr.SinkRouterError) as refused:
            cache.decode_device([seq], 0, KV_HEADS, q.ctypes.data, out.ctypes.data, q_dtype=sr.DType.FP8_E4M3)
        assert refused.value.status == sr.Status.UNSUPPORTED
        assert "q_dtype" in refused.value.message
        assert np.isnan(out).all(), "a refused decode wrote its output"

        # Array paths refuse it before the library, saying which types to pass.
        for call in (lambda: cache.append(seq, 0, k, v, dtype=sr.DType.FP8_E4M3),
                     lambda: cache.read(seq, 0, dtype=sr.DType.FP8_E4M3),
                     lambda: cache.decode([seq], 0, q.astype(np.float32), q_dtype=sr.DType.FP8_E4M3),
                     lambda: cache.decode([seq], 0, q.astype(np.float32), out_dtype=sr.DType.FP8_E4M3)):
            with pytest.raises(ValueError, match="FP8_E4M3 is a cache element type only"):
                call()
        with pytest.raises(ValueError, match="needs dtype="):
            cache.append_device(seq, 0, 1, k.ctypes.data, v.ctypes.data)
        with pytest.raises(TypeError, match="uint16"):
            cache.read(seq, 0, k_out=np.empty(k.shape, dtype=np.uint16), v_out=np.empty(k.shape, dtype=np.uint16))
        assert cache.sequence_length(seq, 0) == 4
