"""Context: an owned sr_context (a backend, its device, threads and default stream)."""
from __future__ import annotations

import ctypes
import dataclasses
import threading

import numpy as np

from . import _abi
from ._abi import Backend, DType
from ._lib import library
from ._structs import defaults, int32
from .errors import check
from .merge import AttentionState, merge_args


@dataclasses.dataclass(frozen=True)
class DecodeStats:
    """sr_decode_stats: totals over the decode steps run with collect_stats since the last reset."""

    steps: int
    heads: int
    blocks_total: int
    blocks_v_skipped: int
    heads_recomputed: int
    max_skipped_mass: float
    max_error_bound: float
    steps_run_dense: int  # routed steps run dense: shorter than Routing.route_from_tokens

    @property
    def v_skip_fraction(self) -> float:
        """Share of scored blocks whose V was not read (0 when nothing was counted)."""
        return self.blocks_v_skipped / self.blocks_total if self.blocks_total else 0.0


class Context:
    """An sr_context. Close it with close() or a `with` block; garbage collection closes it too.

    Caches keep their context alive: close() releases the C context once every cache made on it
    is closed (the header requires caches to go first), and the Context is unusable from then on.
    """

    _handle = None  # set last in __init__, so __del__ of a half-built object frees nothing

    def __init__(self, backend: Backend = Backend.AUTO, *, device_index: int | None = None,
                 num_threads: int | None = None, stream: int | None = None):
        """backend: Backend.AUTO picks the first GPU backend that finds a device, else the CPU.
        stream: a cudaStream_t / hipStream_t as an int (e.g. torch.cuda.Stream().cuda_stream),
        used by GPU calls that pass none. Unset arguments take the library's defaults."""
        lib = library()
        options = defaults(_abi.sr_context_options)
        options.backend = Backend(backend)
        if device_index is not None:
            options.device_index = int32(device_index, "device_index")
        if num_threads is not None:
            options.num_threads = int32(num_threads, "num_threads")
        if stream is not None:
            options.stream = stream
        handle = ctypes.c_void_p()
        check(lib.sr_context_create(ctypes.byref(options), ctypes.byref(handle)))
        self._lib = lib
        self._destroy = lib.sr_context_destroy  # kept: module globals may be gone at exit
        self._lock = threading.Lock()
        self._closed = False
        self._open_caches = 0
        self._handle = handle.value
        backend = ctypes.c_int()
        check(lib.sr_context_backend(self._handle, ctypes.byref(backend)))
        self._backend = Backend(backend.value)  # resolved (never AUTO) and fixed for life

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the context (idempotent). The C context is destroyed now, or when the last
        open cache made on it closes."""
        if self._handle is None:  # never created, or already destroyed
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handle = self._take_handle_if_unused()
        if handle is not None:
            self._destroy(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None or self._closed

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _take_handle_if_unused(self):
        """The handle, cleared, if the context is closed and no cache uses it; else None.
        Called with self._lock held."""
        if not self._closed or self._open_caches or self._handle is None:
            return None
        handle, self._handle = self._handle, None
        return handle

    def _cache_opened(self) -> int:
        """Registers a cache about to be created on this context; returns the raw handle."""
        with self._lock:
            self._require_open()
            self._open_caches += 1
            return self._handle

    def _cache_closed(self) -> None:
        with self._lock:
            self._open_caches -= 1
            handle = self._take_handle_if_unused()
        if handle is not None:
            self._destroy(handle)

    def _require_open(self) -> int:
        if self.closed:
            raise ValueError("operation on a closed sinkrouter.Context")
        return self._handle

    # ------------------------------------------------------------------ queries

    @property
    def backend(self) -> Backend:
        """The backend this context runs on (never AUTO)."""
        self._require_open()
        return self._backend

    @property
    def num_threads(self) -> int:
        """Worker threads of a CPU context; 0 for GPU contexts."""
        value = ctypes.c_int32()
        check(self._lib.sr_context_num_threads(self._require_open(), ctypes.byref(value)))
        return value.value

    @property
    def device_name(self) -> str:
        value = ctypes.c_char_p()
        check(self._lib.sr_context_device_name(self._require_open(), ctypes.byref(value)))
        return value.value.decode("utf-8", errors="replace")

    def stats(self) -> DecodeStats:
        """Statistics of the steps run with collect_stats=True (GPU: waits for the stream)."""
        raw = _abi.sr_decode_stats()
        check(self._lib.sr_context_stats(self._require_open(), ctypes.byref(raw), ctypes.sizeof(raw)))
        return DecodeStats(**{name: getattr(raw, name) for name, _ in raw._fields_ if name != "struct_size"})

    def reset_stats(self) -> None:
        check(self._lib.sr_context_reset_stats(self._require_open()))

    # ------------------------------------------------------------------ merging attention states

    def merge_attention_states(self, states, out: np.ndarray | None = None, *, lse: np.ndarray | None = None,
                               bound: np.ndarray | None = None, state_dtype: DType | None = None,
                               out_dtype: DType | None = None) -> AttentionState:
        """Merges attention over disjoint sets of keys into attention over their union (CPU
        contexts; library 0.3.0): say shards of one sequence, or a shared prefix and a suffix,
        each decoded with lse=.

        states: (out, lse) or (out, lse, bound) tuples (AttentionState), all of one shape: out
        [..., head_dim] (decode()'s [batch][num_q_heads][head_dim]; float32, float16, or uint16
        with state_dtype=DType.BF16), lse and bound float32 of out's shape without head_dim; bound
        is a state's head_error_bound (None = exact). A learned sink belongs in one state only.
        Returns AttentionState(out, lse, bound): the merged output (allocated as `out_dtype`,
        default F32, unless `out` is given), its lse and its certified relative bound, written
        into `lse` / `bound` when given. The result can be merged again."""
        if self.backend != Backend.CPU:
            raise ValueError(f"merge_attention_states() takes host arrays, but this context runs on the "
                             f"{self._backend.name} backend")
        args, merged, keep = merge_args(states, out, lse, bound, state_dtype, out_dtype)
        check(self._lib.sr_merge_attention_states(self._require_open(), ctypes.byref(args)))
        del keep  # the arrays args pointed into lived until the call returned
        return merged

    def __repr__(self) -> str:
        if self.closed:
            return "<sinkrouter.Context closed>"
        return f"<sinkrouter.Context {self.device_name!r}>"
