"""K/V written with append come back from read: f32 and bf16 caches, dtype conversion, strided
arrays, and sequences (fork, truncate, remove) through the binding."""
from __future__ import annotations

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache, random_kv


@pytest.mark.parametrize("page_tokens", [16, 64])
def test_f32_round_trip_is_exact(context, rng, page_tokens):
    with make_cache(context, page_tokens=page_tokens) as cache:
        seq = cache.add_sequence()
        k, v = random_kv(rng, 100, 2, 64)
        cache.append(seq, 1, k[:37], v[:37])
        cache.append(seq, 1, k[37:], v[37:])
        assert cache.sequence_length(seq, 1) == 100
        assert cache.sequence_length(seq, 0) == 0
        k_back, v_back = cache.read(seq, 1)
        assert k_back.dtype == np.float32
        np.testing.assert_array_equal(k_back, k)
        np.testing.assert_array_equal(v_back, v)
        k_part, v_part = cache.read(seq, 1, first_token=30, n_tokens=20)
        np.testing.assert_array_equal(k_part, k[30:50])
        np.testing.assert_array_equal(v_part, v[30:50])


def test_bf16_round_trip_of_bits_is_exact(context, rng):
    with make_cache(context, dtype=sr.DType.BF16) as cache:
        seq = cache.add_sequence()
        k, v = (sr.float32_to_bf16(a) for a in random_kv(rng, 50, 2, 64))
        cache.append(seq, 0, k, v, dtype=sr.DType.BF16)
        k_back, v_back = cache.read(seq, 0)
        assert k_back.dtype == np.uint16
        np.testing.assert_array_equal(k_back, k)
        np.testing.assert_array_equal(v_back, v)
        k_f32, _ = cache.read(seq, 0, dtype=sr.DType.F32)
        np.testing.assert_array_equal(k_f32, sr.bf16_to_float32(k))


def test_f32_into_a_bf16_cache_rounds_to_nearest_even(context, rng):
    with make_cache(context, dtype=sr.DType.BF16) as cache:
        seq = cache.add_sequence()
        k, v = random_kv(rng, 40, 2, 64)
        k[0, 0, :4] = np.array([1.00390625, 1.01171875, -3.0e38, 1e-40], dtype=np.float32)  # ties and extremes
        cache.append(seq, 0, k, v)
        k_back, v_back = cache.read(seq, 0)
        np.testing.assert_array_equal(k_back, sr.float32_to_bf16(k))
        np.testing.assert_array_equal(v_back, sr.float32_to_bf16(v))


def test_f16_arrays_carry_their_dtype(context, rng):
    with make_cache(context, dtype=sr.DType.F16) as cache:
        seq = cache.add_sequence()
        k, v = (a.astype(np.float16) for a in random_kv(rng, 20, 2, 64))
        cache.append(seq, 0, k, v)
        k_back, v_back = cache.read(seq, 0)
        assert k_back.dtype == np.float16
        np.testing.assert_array_equal(k_back, k)
        np.testing.assert_array_equal(v_back, v)


def test_strided_views_pass_their_strides(context, rng):
    with make_cache(context) as cache:
        seq = cache.add_sequence()
        heads_major_k = rng.standard_normal((2, 30, 64)).astype(np.float32)  # [head][token][dim]
        heads_major_v = rng.standard_normal((2, 30, 64)).astype(np.float32)
        k, v = heads_major_k.transpose(1, 0, 2), heads_major_v.transpose(1, 0, 2)
        cache.append(seq, 0, k, v)
        every_other = np.repeat(k, 2, axis=0)[::2]  # token stride twice the row
        cache.append(seq, 1, every_other, every_other)
        k_out = np.full((2, 30, 64), np.nan, dtype=np.float32).transpose(1, 0, 2)
        v_out = np.full((2, 30, 64), np.nan, dtype=np.float32).transpose(1, 0, 2)
        cache.read(seq, 0, k_out=k_out, v_out=v_out)
        np.testing.assert_array_equal(k_out, k)
        np.testing.assert_array_equal(v_out, v)
        np.testing.assert_array_equal(cache.read(seq, 1)[0], k)


def test_fork_copies_on_write_and_truncate_rolls_back(context, rng):
    with make_cache(context, num_layers=1, page_tokens=16) as cache:
        parent = cache.add_sequence()
        k, v = random_kv(rng, 40, 2, 64)
        cache.append(parent, 0, k, v)
        child = cache.fork_sequence(parent)
        assert child != parent
        k_new, v_new = random_kv(rng, 8, 2, 64)
        cache.append(child, 0, k_new, v_new)
        assert cache.sequence_length(parent, 0) == 40
        assert cache.sequence_length(child, 0) == 48
        np.testing.assert_array_equal(cache.read(parent, 0)[0], k)
        np.testing.assert_array_equal(cache.read(child, 0)[0], np.concatenate([k, k_new]))
        cache.truncate_sequence(child, 35)
        np.testing.assert_array_equal(cache.read(child, 0)[1], v[:35])
        cache.remove_sequence(child)
        with pytest.raises(sr.SinkRouterError) as raised:
            cache.sequence_length(child, 0)
        assert raised.value.status == sr.Status.UNKNOWN_SEQUENCE
        np.testing.assert_array_equal(cache.read(parent, 0)[1], v)
