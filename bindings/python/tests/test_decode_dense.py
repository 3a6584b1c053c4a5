"""Dense decode (routing off) against float64 attention over the same cache contents."""
from __future__ import annotations

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache
from sinkrouter.testing import attention_reference, relative_error

TOLERANCE = {sr.DType.F32: 1e-5, sr.DType.BF16: 1e-2, sr.DType.F16: 1e-2}


def fill(cache, rng, lengths, layer=0):
    """One sequence per length with random K/V (in the cache's dtype); returns their ids."""
    ids = []
    for length in lengths:
        seq = cache.add_sequence()
        shape = (length, cache.num_kv_heads, cache.head_dim)
        k, v = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
        cache.append(seq, layer, k, v)
        ids.append(seq)
    return ids


def reference(cache, ids, q, layer=0, scale=None):
    """float64 attention over what the cache holds (read back as f32, exact for every dtype)."""
    return np.stack([attention_reference(*cache.read(seq, layer, dtype=sr.DType.F32), q[b], scale)
                     for b, seq in enumerate(ids)])


@pytest.mark.parametrize("dtype", [sr.DType.F32, sr.DType.BF16, sr.DType.F16])
@pytest.mark.parametrize("head_dim,group,page_tokens", [(64, 1, 16), (128, 4, 32), (256, 8, 16), (128, 1, 128)])
def test_dense_matches_float64(context, rng, dtype, head_dim, group, page_tokens):
    lengths = [1, 77, 300, page_tokens * 3]  # mixed, most not a multiple of the page
    with make_cache(context, num_layers=1, num_kv_heads=2, head_dim=head_dim, page_tokens=page_tokens,
                    dtype=dtype, capacity_tokens=2048) as cache:
        ids = fill(cache, rng, lengths)
        q = rng.standard_normal((len(ids), 2 * group, head_dim)).astype(np.float32)
        out = np.full(q.shape, np.nan, dtype=np.float32)  # poisoned: an unwritten row fails
        assert cache.decode(ids, 0, q, out) is out
        error = relative_error(out, reference(cache, ids, q), axis=-1)
        assert np.all(error < TOLERANCE[dtype]), error.max()


def test_scale_layer_and_output_dtypes(context, rng):
    with make_cache(context, num_layers=3, head_dim=64) as cache:
        ids = fill(cache, rng, [90, 33], layer=2)
        q = rng.standard_normal((2, 4, 64)).astype(np.float32)
        expected = reference(cache, ids, q, layer=2, scale=0.3)
        out = cache.decode(ids, 2, q, scale=0.3)
        assert out.dtype == np.float32
        assert relative_error(out, expected) < 1e-5
        bf16_out = cache.decode(ids, 2, sr.float32_to_bf16(q), q_dtype=sr.DType.BF16, out_dtype=sr.DType.BF16,
                                scale=0.3)
        assert bf16_out.dtype == np.uint16
        q_rounded = sr.bf16_to_float32(sr.float32_to_bf16(q))
        assert relative_error(sr.bf16_to_float32(bf16_out), reference(cache, ids, q_rounded, layer=2, scale=0.3)) < 1e-2
        f16_out = cache.decode(ids, 2, q.astype(np.float16), out=np.empty(q.shape, np.float16), scale=0.3)
        assert relative_error(f16_out, expected) < 1e-2


def test_device_pointer_variant_reads_context_memory(context, rng):
    """decode_device takes raw pointers; on the CPU backend the context's memory is the host,
    so NumPy's own pointers stand in for torch's data_ptr() and must give the same result."""
    with make_cache(context) as cache:
        ids = np.array(fill(cache, rng, [50, 120]), dtype=np.int64)
        q = rng.standard_normal((2, 4, 64)).astype(np.float32)
        out = np.full(q.shape, np.nan, dtype=np.float32)
        mass = np.full((2, 4), np.nan, dtype=np.float32)
        bound = np.full((2, 4), np.nan, dtype=np.float32)
        cache.decode_device(ids, 0, 4, q.ctypes.data, out.ctypes.data, head_skipped_mass_ptr=mass.ctypes.data,
                            head_error_bound_ptr=bound.ctypes.data)
        np.testing.assert_array_equal(out, cache.decode(ids, 0, q))
        np.testing.assert_array_equal(mass, np.zeros((2, 4)))
        np.testing.assert_array_equal(bound, np.zeros((2, 4)))
