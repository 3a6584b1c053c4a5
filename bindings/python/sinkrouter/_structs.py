"""Options structs filled by the library's own *_default functions (no default repeated here)."""
from __future__ import annotations

import ctypes

from . import _abi
from ._lib import library
from .errors import check

_DEFAULT_FUNCTIONS = {
    _abi.sr_context_options: "sr_context_options_default",
    _abi.sr_kv_cache_options: "sr_kv_cache_options_default",
    _abi.sr_kv_io: "sr_kv_io_default",
    _abi.sr_decode_args: "sr_decode_args_default",
    _abi.sr_merge_args: "sr_merge_args_default",
}


def defaults(struct_type):
    """A new `struct_type` with struct_size set and every field at the library's default."""
    value = struct_type()
    fill = getattr(library(), _DEFAULT_FUNCTIONS[struct_type])
    check(fill(ctypes.byref(value), ctypes.sizeof(value)))
    return value


def int32(value, name: str) -> int:
    """`value` as an int that fits int32_t: ctypes would wrap a larger one silently."""
    value = int(value)
    if not -2**31 <= value < 2**31:
        raise OverflowError(f"{name} = {value} does not fit in int32_t")
    return value


def int64(value, name: str) -> int:
    """`value` as an int that fits int64_t."""
    value = int(value)
    if not -2**63 <= value < 2**63:
        raise OverflowError(f"{name} = {value} does not fit in int64_t")
    return value
