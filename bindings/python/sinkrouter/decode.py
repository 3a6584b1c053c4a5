"""Routing options and the sr_decode_args they fill (shared by host and device decode)."""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _abi
from ._abi import RoutingMode
from ._structs import defaults, int32, int64


@dataclasses.dataclass(frozen=True)
class Routing:
    """How a decode step may skip V blocks. Fields left None take the library's defaults.

    RoutingMode.BUDGET (the default here, and the mode to run) skips while the certified relative
    error stays within error_budget; RoutingMode.TAU skips pages whose logits all sit more than
    tau below the anchor reference (error_budget then caps the error, 0 = no cap). The anchor
    set is the first sink_tokens and the last window_tokens of each sequence.

    route_from_tokens: routing applies from this length on; a step whose longest sequence is
    shorter runs dense (exact, counted in DecodeStats.steps_run_dense). -1 (the library's
    default) = the backend's own threshold (CPU 0, CUDA/HIP 65536); 0 = route every step.
    """

    mode: RoutingMode = RoutingMode.BUDGET
    tau: float | None = None
    sink_tokens: int | None = None
    window_tokens: int | None = None
    error_budget: float | None = None
    route_from_tokens: int | None = None


def sequence_ids(seq_ids) -> np.ndarray:
    """The batch's sequence ids as a C-contiguous int64 vector (one id or a sequence of ids)."""
    ids = np.ascontiguousarray(np.atleast_1d(np.asarray(seq_ids)))
    if ids.size == 0:  # [] reads as float64; an empty batch is the library's to refuse
        ids = ids.astype(np.int64)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"seq_ids must be an int or a 1-D sequence of ints, got {ids.dtype} of shape {ids.shape}")
    return ids.astype(np.int64, copy=False)


def decode_args(layer: int, ids: np.ndarray, num_q_heads: int, routing: Routing | None, scale: float | None,
                collect_stats: bool, stream: int, *, window_left: int | None = None,
                window_sink_tokens: int | None = None, logit_soft_cap: float | None = None) -> _abi.sr_decode_args:
    """sr_decode_args without buffers: the caller sets q, out, the per-head pointers and
    sink_logits. `ids` must stay alive until the call returns (args points into it). The
    attention variants left None keep the library's defaults (no window, no soft cap)."""
    args = defaults(_abi.sr_decode_args)
    args.layer = int32(layer, "layer")
    args.batch = len(ids)
    args.seq_ids = ids.ctypes.data
    args.num_q_heads = int32(num_q_heads, "num_q_heads")
    if scale is not None:
        args.scale = scale
    routing = routing if routing is not None else Routing(RoutingMode.OFF)
    args.routing = RoutingMode(routing.mode)
    for field in ("tau", "sink_tokens", "window_tokens", "error_budget"):
        value = getattr(routing, field)
        if value is not None:
            setattr(args, field, int32(value, field) if field.endswith("_tokens") else value)
    if routing.route_from_tokens is not None:
        args.route_from_tokens = int64(routing.route_from_tokens, "route_from_tokens")
    if window_left is not None:
        args.window_left = int32(window_left, "window_left")
    if window_sink_tokens is not None:
        args.window_sink_tokens = int32(window_sink_tokens, "window_sink_tokens")
    if logit_soft_cap is not None:
        args.logit_soft_cap = logit_soft_cap
    args.collect_stats = 1 if collect_stats else 0
    args.stream = stream or None
    return args
