"""How NumPy arrays carry the library's element types, and bf16 conversions.

NumPy has no bfloat16: bf16 data travels as uint16 arrays holding the bits, and because uint16
could equally hold f16 bits, such arrays need an explicit DType. float32 and float16 arrays
map to F32 and F16 by themselves.
"""
from __future__ import annotations

import numpy as np

from ._abi import DType

_NUMPY_DTYPE = {DType.F32: np.dtype(np.float32), DType.F16: np.dtype(np.float16), DType.BF16: np.dtype(np.uint16)}


def numpy_dtype(dtype: DType) -> np.dtype:
    """The NumPy dtype that holds elements of `dtype` (uint16 bits for BF16)."""
    try:
        return _NUMPY_DTYPE[DType(dtype)]
    except (KeyError, ValueError):
        if dtype == DType.FP8_E4M3:
            raise ValueError("dtype = FP8_E4M3 is a cache element type only, never an array's: pass F32, F16 or "
                             "BF16 arrays (an FP8 cache converts them on append and read)") from None
        raise ValueError(f"dtype = {dtype!r} has no array form (use F32, F16 or BF16)") from None


def dtype_of(array: np.ndarray, dtype: DType | None, name: str) -> DType:
    """The DType `array` holds: `dtype` when given (checked against the array), else inferred."""
    if dtype is None:
        if array.dtype == np.float32:
            return DType.F32
        if array.dtype == np.float16:
            return DType.F16
        if array.dtype == np.uint16:
            raise TypeError(f"{name} is uint16: pass dtype=DType.BF16 or dtype=DType.F16 to say which bits it holds")
        raise TypeError(f"{name} has dtype {array.dtype}; expected float32, float16, or uint16 with an explicit dtype")
    dtype = DType(dtype)
    expected = numpy_dtype(dtype)
    allowed = (expected, np.dtype(np.uint16)) if dtype == DType.F16 else (expected,)
    if array.dtype not in allowed:
        raise TypeError(f"{name} has dtype {array.dtype}, which cannot hold {dtype.name} (expected {expected})")
    return dtype


def float32_to_bf16(values: np.ndarray) -> np.ndarray:
    """bf16 bits (uint16) of float32 values, rounded to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    rounded = np.where(nan, (bits >> 16) | 0x0040, rounded)  # quiet NaN, sign kept
    return rounded.astype(np.uint16)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bf16 bits (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
