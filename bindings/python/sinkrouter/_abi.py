"""ctypes mirror of include/sinkrouter/sinkrouter.h: enums, structs and function prototypes.

tests/test_abi_layout.py compares every declaration here with the header as the C compiler
sees it (the sr_abi_layout_dump program), so a drift fails a test instead of corrupting memory.
"""
from __future__ import annotations

import ctypes
import enum
from ctypes import c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint, c_void_p

# SR_ABI_VERSION of the header these declarations mirror; the loader refuses another.
ABI_VERSION = 1


class Status(enum.IntEnum):
    """sr_status: the outcome of every call (values pinned by the header)."""

    OK = 0
    INVALID_ARGUMENT = 1
    OUT_OF_RANGE = 2
    UNSUPPORTED = 3
    OUT_OF_MEMORY = 4
    CACHE_FULL = 5
    UNKNOWN_SEQUENCE = 6
    BACKEND_UNAVAILABLE = 7
    DEVICE = 8
    STRUCT_SIZE = 9
    INTERNAL = 10


class Backend(enum.IntEnum):
    """sr_backend."""

    AUTO = 0
    CPU = 1
    CUDA = 2
    HIP = 3


class DType(enum.IntEnum):
    """sr_dtype: element type of K/V, queries and outputs."""

    CACHE = -1  # sr_kv_io only: the cache's own dtype
    F32 = 0
    F16 = 1
    BF16 = 2
    # OCP FP8 E4M3, a cache element type only: arrays never hold it. The library keeps one f32
    # scale per token and kv-head for K and for V and converts on append and read. Since 0.2.0.
    FP8_E4M3 = 3


class Memory(enum.IntEnum):
    """sr_memory: where a caller's buffer lives."""

    HOST = 0
    DEVICE = 1


class RoutingMode(enum.IntEnum):
    """sr_routing_mode."""

    OFF = 0
    TAU = 1
    BUDGET = 2


# C enum name -> (Python enum, prefix its C member names carry before the Python name).
C_ENUMS = {
    "sr_status": (Status, "SR_ERR_"),
    "sr_backend": (Backend, "SR_BACKEND_"),
    "sr_dtype": (DType, "SR_DTYPE_"),
    "sr_memory": (Memory, "SR_MEMORY_"),
    "sr_routing_mode": (RoutingMode, "SR_ROUTING_"),
}

c_enum = c_int  # every sr_ enum is an int-sized enum on the platforms we build for


class sr_context_options(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("backend", c_enum),
        ("device_index", c_int32),
        ("num_threads", c_int32),
        ("stream", c_void_p),
    ]


class sr_kv_cache_options(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("num_layers", c_int32),
        ("num_kv_heads", c_int32),
        ("head_dim", c_int32),
        ("page_tokens", c_int32),
        ("capacity_tokens", c_int64),
        ("dtype", c_enum),
        ("max_batch", c_int32),
        ("max_q_heads", c_int32),
    ]


class sr_kv_io(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("dtype", c_enum),
        ("token_stride", c_int64),
        ("head_stride", c_int64),
        ("memory", c_enum),
        ("stream", c_void_p),
    ]


class sr_decode_args(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("layer", c_int32),
        ("batch", c_int32),
        ("seq_ids", c_void_p),
        ("num_q_heads", c_int32),
        ("q", c_void_p),
        ("q_dtype", c_enum),
        ("out", c_void_p),
        ("out_dtype", c_enum),
        ("scale", c_float),
        ("routing", c_enum),
        ("tau", c_float),
        ("sink_tokens", c_int32),
        ("window_tokens", c_int32),
        ("error_budget", c_float),
        ("head_skipped_mass", c_void_p),
        ("head_error_bound", c_void_p),
        ("collect_stats", c_int32),
        ("stream", c_void_p),
        ("route_from_tokens", c_int64),
        # Attention variants (since library 0.3.0).
        ("sink_logits", c_void_p),
        ("lse", c_void_p),
        ("window_left", c_int32),
        ("window_sink_tokens", c_int32),
        ("logit_soft_cap", c_float),
    ]


class sr_merge_args(ctypes.Structure):
    """Since library 0.3.0. state_outs, state_lses and state_bounds point at arrays of pointers."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("num_states", c_int32),
        ("rows", c_int64),
        ("head_dim", c_int32),
        ("state_outs", c_void_p),
        ("state_dtype", c_enum),
        ("state_lses", c_void_p),
        ("state_bounds", c_void_p),
        ("out", c_void_p),
        ("out_dtype", c_enum),
        ("lse", c_void_p),
        ("bound", c_void_p),
        ("stream", c_void_p),
    ]


class sr_decode_stats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("steps", c_int64),
        ("heads", c_int64),
        ("blocks_total", c_int64),
        ("blocks_v_skipped", c_int64),
        ("heads_recomputed", c_int64),
        ("max_skipped_mass", c_double),
        ("max_error_bound", c_double),
        ("steps_run_dense", c_int64),
    ]


# Structs carry their C names, so the drift test finds each one by the header's name.
C_STRUCTS = (sr_context_options, sr_kv_cache_options, sr_kv_io, sr_decode_args, sr_merge_args, sr_decode_stats)

_p = ctypes.POINTER
_status = c_enum
_handle = c_void_p

# Function name -> (restype, argtypes). Handles travel as void*: their types are opaque.
FUNCTIONS = {
    "sr_status_string": (c_char_p, [_status]),
    "sr_last_error": (c_char_p, []),
    "sr_version_number": (c_uint, []),
    "sr_version": (c_char_p, []),
    "sr_abi_version": (c_uint, []),
    "sr_backend_name": (c_char_p, [c_enum]),
    "sr_dtype_size": (c_size_t, [c_enum]),
    "sr_context_options_default": (_status, [_p(sr_context_options), c_size_t]),
    "sr_context_create": (_status, [_p(sr_context_options), _p(_handle)]),
    "sr_context_destroy": (None, [_handle]),
    "sr_context_backend": (_status, [_handle, _p(c_enum)]),
    "sr_context_num_threads": (_status, [_handle, _p(c_int32)]),
    "sr_context_device_name": (_status, [_handle, _p(c_char_p)]),
    "sr_kv_cache_options_default": (_status, [_p(sr_kv_cache_options), c_size_t]),
    "sr_kv_cache_create": (_status, [_handle, _p(sr_kv_cache_options), _p(_handle)]),
    "sr_kv_cache_destroy": (None, [_handle]),
    "sr_kv_cache_pages": (_status, [_handle, _p(c_int64), _p(c_int64)]),
    "sr_seq_add": (_status, [_handle, _p(c_int64)]),
    "sr_seq_fork": (_status, [_handle, c_int64, _p(c_int64)]),
    "sr_seq_remove": (_status, [_handle, c_int64]),
    "sr_seq_length": (_status, [_handle, c_int64, c_int32, _p(c_int64)]),
    "sr_seq_truncate": (_status, [_handle, c_int64, c_int64]),
    "sr_kv_io_default": (_status, [_p(sr_kv_io), c_size_t]),
    "sr_kv_append": (_status, [_handle, c_int64, c_int32, c_int64, c_void_p, c_void_p, _p(sr_kv_io)]),
    "sr_kv_read": (_status, [_handle, c_int64, c_int32, c_int64, c_int64, c_void_p, c_void_p, _p(sr_kv_io)]),
    "sr_decode_args_default": (_status, [_p(sr_decode_args), c_size_t]),
    "sr_decode_step": (_status, [_handle, _handle, _p(sr_decode_args)]),
    "sr_merge_args_default": (_status, [_p(sr_merge_args), c_size_t]),
    "sr_merge_attention_states": (_status, [_handle, _p(sr_merge_args)]),
    "sr_context_stats": (_status, [_handle, _p(sr_decode_stats), c_size_t]),
    "sr_context_reset_stats": (_status, [_handle]),
}
