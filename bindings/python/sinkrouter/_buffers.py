"""Checks that NumPy buffers match what a C call will read or write.

The C library cannot see a buffer's size, so every shape is checked here before a pointer is
passed: a wrong shape raises ValueError instead of reading or writing past the array.
"""
from __future__ import annotations

import numpy as np

from ._abi import DType
from .dtypes import dtype_of, numpy_dtype


def element_strides(array: np.ndarray) -> tuple[int, ...] | None:
    """Strides in elements when the last axis is unit-stride and the others positive whole
    multiples of the element size (what sr_kv_io can describe); None otherwise."""
    item = array.itemsize
    if array.size == 0:  # NumPy gives empty arrays zero strides; nothing will be touched
        return tuple(int(x) for x in np.cumprod((1,) + array.shape[:0:-1])[::-1])
    strides = array.strides
    if strides[-1] != item and array.shape[-1] > 1:
        return None
    if any(s <= 0 or s % item for s in strides[:-1]):
        return None
    return tuple(s // item for s in strides[:-1]) + (1,)


def _require_shape(array: np.ndarray, shape: tuple[int, ...], name: str, layout: str) -> None:
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape} ({layout})")


def kv_input(k, v, num_kv_heads: int, head_dim: int, dtype: DType | None):
    """(k, v, dtype, token_stride, head_stride) for sr_kv_append: arrays [n][heads][dim] of one
    dtype; strided views pass their strides, layouts sr_kv_io cannot describe are copied."""
    k, v = np.asarray(k), np.asarray(v)
    if k.ndim != 3:
        raise ValueError(f"k has shape {k.shape}, expected [n_tokens][{num_kv_heads}][{head_dim}]")
    shape = (k.shape[0], num_kv_heads, head_dim)
    _require_shape(k, shape, "k", "[n_tokens][num_kv_heads][head_dim]")
    _require_shape(v, shape, "v", "[n_tokens][num_kv_heads][head_dim]")
    if k.dtype != v.dtype:
        raise TypeError(f"k has dtype {k.dtype} but v has {v.dtype}: they must match")
    resolved = dtype_of(k, dtype, "k")
    strides = element_strides(k)
    if strides is None or strides != element_strides(v):
        k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
        strides = element_strides(k)
    return k, v, resolved, strides[0], strides[1]


def kv_output(out: np.ndarray | None, name: str, shape: tuple[int, int, int], dtype: DType) -> np.ndarray:
    """A writable [n][heads][dim] array for sr_kv_read: `out` checked, or a new one."""
    expected = numpy_dtype(dtype)
    if out is None:
        return np.empty(shape, dtype=expected)
    _require_output(out, name, expected)
    _require_shape(out, shape, name, "[n_tokens][num_kv_heads][head_dim]")
    if element_strides(out) is None:
        raise ValueError(f"{name} has strides {out.strides}: the last axis must be unit-stride and the others positive")
    return out


def contiguous_input(array, shape: tuple[int, ...], name: str, layout: str, dtype: DType | None):
    """(C-contiguous array, DType) of an input with a fixed shape; copied only if strided."""
    array = np.asarray(array)
    _require_shape(array, shape, name, layout)
    resolved = dtype_of(array, dtype, name)
    return np.ascontiguousarray(array), resolved


def float32_input(array, shape: tuple[int, ...], name: str, layout: str) -> np.ndarray:
    """A C-contiguous float32 array of a real-valued input with a fixed shape (sequences of
    numbers and other real dtypes are converted; float32 arrays pass without a copy)."""
    array = np.asarray(array)
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.floating)
                                       or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} has dtype {array.dtype}; expected real numbers (float32)")
    _require_shape(array, shape, name, layout)
    return np.ascontiguousarray(array, dtype=np.float32)


def contiguous_output(out, shape: tuple[int, ...], name: str, layout: str, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous writable output: `out` checked, or a new one."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    _require_output(out, name, dtype)
    _require_shape(out, shape, name, layout)
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (strides {out.strides})")
    return out


def _require_output(out, name: str, dtype: np.dtype) -> None:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, not {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
