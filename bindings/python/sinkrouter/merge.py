"""Attention states (out, lse, bound) and the sr_merge_args that merges them.

Attention computed over disjoint sets of keys (shards of one sequence, a shared prefix cache
and a per-request suffix) merges into attention over their union from each part's output and
lse (decode(lse=...)): out = sum_i exp(lse_i - lse) out_i with lse = log sum_i exp(lse_i). The
parts' certified bounds (head_error_bound) combine into the merged one.
"""
from __future__ import annotations

import ctypes
from typing import NamedTuple, Optional

import numpy as np

from . import _abi, _buffers
from ._abi import DType
from ._structs import defaults, int32, int64
from .dtypes import dtype_of, numpy_dtype


class AttentionState(NamedTuple):
    """Attention over one set of keys: out [..., head_dim] (decode()'s [batch][num_q_heads]
    [head_dim]), lse float32 of out's shape without head_dim, and optionally bound, the
    certified relative error bound of each row (head_error_bound; None = exact).
    Context.merge_attention_states takes these (or plain tuples) and returns one."""

    out: np.ndarray
    lse: np.ndarray
    bound: Optional[np.ndarray] = None


def _unpack(state, i: int) -> AttentionState:
    try:
        items = tuple(state)
    except TypeError:
        raise TypeError(f"states[{i}] is a {type(state).__name__}, expected an (out, lse) or (out, lse, bound) "
                        "tuple") from None
    if len(items) not in (2, 3):
        raise ValueError(f"states[{i}] has {len(items)} items, expected (out, lse) or (out, lse, bound)")
    return AttentionState(*items)


def merge_args(states, out, lse, bound, state_dtype: DType | None, out_dtype: DType | None):
    """(sr_merge_args, AttentionState of the outputs, keep-alive list) for host arrays. Every
    array is checked against the first state's shape; with no states at all the library is
    called with num_states = 0 and words the refusal itself."""
    states = [_unpack(state, i) for i, state in enumerate(states)]
    keep = []  # arrays and pointer tables args points into
    args = defaults(_abi.sr_merge_args)
    args.num_states = int32(len(states), "num_states")
    if not states:  # nothing to take shapes from; the library refuses num_states = 0 first
        return args, AttentionState(out, lse, bound), keep

    first = np.asarray(states[0].out)
    if first.ndim < 2:
        raise ValueError(f"states[0].out has shape {first.shape}, expected [rows...][head_dim] such as "
                         "[batch][num_q_heads][head_dim]")
    shape, rows_shape = first.shape, first.shape[:-1]
    layout, rows_layout = f"the shape of states[0].out, {shape}", f"states[0].out's rows, {rows_shape}"
    state_dtype = dtype_of(first, state_dtype, "states[0].out")
    outs, lses, bounds = [], [], []
    for i, state in enumerate(states):
        state_out, _ = _buffers.contiguous_input(state.out, shape, f"states[{i}].out", layout, state_dtype)
        outs.append(state_out)
        lses.append(_buffers.float32_input(state.lse, rows_shape, f"states[{i}].lse", rows_layout))
        bounds.append(None if state.bound is None else
                      _buffers.float32_input(state.bound, rows_shape, f"states[{i}].bound", rows_layout))
    keep += outs + lses + bounds

    if out is None:
        out_dtype = DType.F32 if out_dtype is None else DType(out_dtype)
        out = np.empty(shape, dtype=numpy_dtype(out_dtype))
    else:
        out_dtype = dtype_of(out, out_dtype, "out")
        out = _buffers.contiguous_output(out, shape, "out", layout, out.dtype)
    f32 = np.dtype(np.float32)
    lse = np.empty(rows_shape, f32) if lse is None else _buffers.contiguous_output(lse, rows_shape, "lse",
                                                                                   rows_layout, f32)
    bound = np.empty(rows_shape, f32) if bound is None else _buffers.contiguous_output(bound, rows_shape, "bound",
                                                                                       rows_layout, f32)

    def table(arrays):
        pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data if a is not None else None for a in arrays])
        keep.append(pointers)
        return ctypes.addressof(pointers)

    args.rows = int64(int(np.prod(rows_shape)), "rows")
    args.head_dim = int32(shape[-1], "head_dim")
    args.state_outs, args.state_dtype = table(outs), state_dtype
    args.state_lses = table(lses)
    args.state_bounds = table(bounds) if any(b is not None for b in bounds) else None
    args.out, args.out_dtype = out.ctypes.data, out_dtype
    args.lse, args.bound = lse.ctypes.data, bound.ctypes.data
    return args, AttentionState(out, lse, bound), keep
