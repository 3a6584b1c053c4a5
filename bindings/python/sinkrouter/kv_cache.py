"""KvCache: an owned sr_kv_cache with its sequences, K/V transfer and decode steps."""
from __future__ import annotations

import ctypes
import threading
from typing import NamedTuple

import numpy as np

from . import _abi, _buffers
from ._abi import Backend, DType, Memory
from ._structs import defaults, int32, int64
from .context import Context
from .decode import Routing, decode_args, sequence_ids
from .dtypes import dtype_of, numpy_dtype
from .errors import check

_QKV_LAYOUT = "[batch][num_q_heads][head_dim]"
_HEAD_LAYOUT = "[batch][num_q_heads]"


class PagePool(NamedTuple):
    total: int
    free: int


class CacheShape(NamedTuple):
    num_layers: int
    num_kv_heads: int
    head_dim: int
    page_tokens: int
    dtype: DType
    max_batch: int


class KvCache:
    """An sr_kv_cache: paged K/V storage for num_layers x num_kv_heads x head_dim.

    Host buffers are NumPy arrays: K/V as [n_tokens][num_kv_heads][head_dim], queries and
    outputs as [batch][num_q_heads][head_dim]. float32 and float16 arrays carry their type;
    bf16 travels as uint16 bits (see sinkrouter.dtypes) with an explicit dtype. GPU buffers are
    raw device pointers (ints, e.g. torch's tensor.data_ptr()) given to append_device and
    decode_device. The cache keeps its Context alive; close it with close() or a `with` block.
    """

    _handle = None  # set last in __init__, so __del__ of a half-built object frees nothing

    def __init__(self, context: Context, *, num_layers: int, num_kv_heads: int, capacity_tokens: int,
                 head_dim: int | None = None, page_tokens: int | None = None, dtype: DType | None = None,
                 max_batch: int | None = None, max_q_heads: int | None = None):
        """Unset arguments take the library's defaults (head_dim 128, page_tokens 16, dtype BF16,
        max_batch 256, max_q_heads 8 * num_kv_heads)."""
        lib = context._lib
        options = defaults(_abi.sr_kv_cache_options)
        options.num_layers = int32(num_layers, "num_layers")
        options.num_kv_heads = int32(num_kv_heads, "num_kv_heads")
        options.capacity_tokens = int64(capacity_tokens, "capacity_tokens")
        for name, value in (("head_dim", head_dim), ("page_tokens", page_tokens),
                            ("max_batch", max_batch), ("max_q_heads", max_q_heads)):
            if value is not None:
                setattr(options, name, int32(value, name))
        if dtype is not None:
            options.dtype = DType(dtype)
        context_handle = context._cache_opened()
        handle = ctypes.c_void_p()
        try:
            check(lib.sr_kv_cache_create(context_handle, ctypes.byref(options), ctypes.byref(handle)))
        except BaseException:
            context._cache_closed()
            raise
        self._lib = lib
        self._destroy = lib.sr_kv_cache_destroy  # kept: module globals may be gone at exit
        self._lock = threading.Lock()
        self._context = context
        self._backend = context._backend
        self._shape = CacheShape(options.num_layers, options.num_kv_heads, options.head_dim, options.page_tokens,
                                 DType(options.dtype), options.max_batch)
        self._handle = handle.value

    # The buffer checks rely on these, so they are read-only.
    num_layers = property(lambda self: self._shape.num_layers)
    num_kv_heads = property(lambda self: self._shape.num_kv_heads)
    head_dim = property(lambda self: self._shape.head_dim)
    page_tokens = property(lambda self: self._shape.page_tokens)
    dtype = property(lambda self: self._shape.dtype, doc="element type of the stored K and V")
    max_batch = property(lambda self: self._shape.max_batch)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Destroy the cache (idempotent) and let go of its context, which is destroyed now if it
        was closed and waited on this cache, or once nothing else refers to it."""
        if self._handle is None:
            return
        with self._lock:
            handle, self._handle = self._handle, None
            context, self._context = self._context, None
        if handle is not None:
            self._destroy(handle)
            context._cache_closed()

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def context(self) -> Context:
        """The context the cache was made on (None once the cache is closed)."""
        return self._context

    def __enter__(self) -> KvCache:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _require_open(self) -> int:
        handle = self._handle
        if handle is None:
            raise ValueError("operation on a closed sinkrouter.KvCache")
        return handle

    def __repr__(self) -> str:
        pool = None if self.closed else self.pages()
        state = "closed" if pool is None else f"{pool.free}/{pool.total} pages free"
        return (f"<sinkrouter.KvCache {self.num_layers} layers x {self.num_kv_heads} kv-heads x {self.head_dim}, "
                f"{self.dtype.name}, {state}>")

    # ------------------------------------------------------------------ pages and sequences

    def pages(self) -> PagePool:
        """Pages in the pool, and pages no sequence holds."""
        total, free = ctypes.c_int64(), ctypes.c_int64()
        check(self._lib.sr_kv_cache_pages(self._require_open(), ctypes.byref(total), ctypes.byref(free)))
        return PagePool(total.value, free.value)

    def add_sequence(self) -> int:
        """A new empty sequence's id (ids are never reused within a cache)."""
        seq = ctypes.c_int64()
        check(self._lib.sr_seq_add(self._require_open(), ctypes.byref(seq)))
        return seq.value

    def fork_sequence(self, parent: int) -> int:
        """A new sequence sharing the parent's tokens (pages copied on the first write)."""
        child = ctypes.c_int64()
        check(self._lib.sr_seq_fork(self._require_open(), int64(parent, "parent"), ctypes.byref(child)))
        return child.value

    def remove_sequence(self, seq: int) -> None:
        check(self._lib.sr_seq_remove(self._require_open(), int64(seq, "seq")))

    def sequence_length(self, seq: int, layer: int) -> int:
        """Tokens the sequence holds in one layer."""
        length = ctypes.c_int64()
        check(self._lib.sr_seq_length(self._require_open(), int64(seq, "seq"), int32(layer, "layer"),
                                      ctypes.byref(length)))
        return length.value

    def truncate_sequence(self, seq: int, new_length: int) -> None:
        """Keep only the first new_length tokens in every layer."""
        check(self._lib.sr_seq_truncate(self._require_open(), int64(seq, "seq"), int64(new_length, "new_length")))

    # ------------------------------------------------------------------ K/V transfer

    def append(self, seq: int, layer: int, k, v, *, dtype: DType | None = None) -> None:
        """Append K and V arrays [n_tokens][num_kv_heads][head_dim] to one layer of a sequence,
        converting to the cache's dtype. Strided views pass their strides (no copy)."""
        k, v, dtype, token_stride, head_stride = _buffers.kv_input(k, v, self.num_kv_heads, self.head_dim, dtype)
        io = self._io(dtype, token_stride, head_stride)
        check(self._lib.sr_kv_append(self._require_open(), int64(seq, "seq"), int32(layer, "layer"), k.shape[0],
                                     k.ctypes.data, v.ctypes.data, ctypes.byref(io)))

    def read(self, seq: int, layer: int, first_token: int = 0, n_tokens: int | None = None, *,
             dtype: DType | None = None, k_out: np.ndarray | None = None, v_out: np.ndarray | None = None):
        """(k, v) of tokens [first_token, first_token + n_tokens) of one layer, each
        [n_tokens][num_kv_heads][head_dim] in `dtype` (default: the cache's own, exact; an FP8
        cache, which no array can hold, gives its stored values as the type of k_out / v_out, else
        float32). n_tokens defaults to the rest of the sequence; k_out / v_out are filled when given."""
        if dtype is None or dtype == DType.CACHE:
            dtype = self.dtype if self.dtype != DType.FP8_E4M3 else self._fp8_read_dtype(k_out, v_out)
        else:
            dtype = DType(dtype)
        if n_tokens is None:
            n_tokens = self.sequence_length(seq, layer) - first_token
        shape = (int64(n_tokens, "n_tokens"), self.num_kv_heads, self.head_dim)
        if shape[0] < 1:  # let the library word the error; allocate nothing for it
            shape = (0, self.num_kv_heads, self.head_dim)
        k_out = _buffers.kv_output(k_out, "k_out", shape, dtype)
        v_out = _buffers.kv_output(v_out, "v_out", shape, dtype)
        strides = _buffers.element_strides(k_out)
        if strides != _buffers.element_strides(v_out):
            raise ValueError(f"k_out and v_out must have the same strides ({k_out.strides} vs {v_out.strides})")
        io = self._io(dtype, strides[0], strides[1])
        check(self._lib.sr_kv_read(self._require_open(), int64(seq, "seq"), int32(layer, "layer"),
                                   int64(first_token, "first_token"), int64(n_tokens, "n_tokens"),
                                   k_out.ctypes.data, v_out.ctypes.data, ctypes.byref(io)))
        return k_out, v_out

    def append_device(self, seq: int, layer: int, n_tokens: int, k_ptr: int, v_ptr: int, *,
                      dtype: DType = DType.CACHE, token_stride: int = 0, head_stride: int = 0,
                      stream: int = 0) -> None:
        """Append K/V from device memory of a GPU cache's device (asynchronous on `stream`, 0 =
        the context's). k_ptr / v_ptr are raw pointers (torch: tensor.data_ptr()); element
        (t, h, d) sits at ptr[t * token_stride + h * head_stride + d] (0 = contiguous). `dtype`
        is the buffers' element type; an FP8 cache needs it named (F32, F16 or BF16)."""
        dtype = DType(dtype)
        if dtype == DType.CACHE and self.dtype == DType.FP8_E4M3:
            raise ValueError("append_device to an FP8_E4M3 cache needs dtype= naming the buffers' element type "
                             "(F32, F16 or BF16): FP8 is never a buffer type")
        io = self._io(dtype, token_stride, head_stride, Memory.DEVICE, stream)
        check(self._lib.sr_kv_append(self._require_open(), int64(seq, "seq"), int32(layer, "layer"),
                                     int64(n_tokens, "n_tokens"), k_ptr or None, v_ptr or None, ctypes.byref(io)))

    @staticmethod
    def _fp8_read_dtype(k_out: np.ndarray | None, v_out: np.ndarray | None) -> DType:
        """What a read of an FP8 cache without a dtype converts to: the given array's type (uint16
        must say BF16 or F16), else F32, the values the library dequantizes to."""
        for name, out in (("k_out", k_out), ("v_out", v_out)):
            if out is not None:
                return dtype_of(out, None, name)
        return DType.F32

    def _io(self, dtype: DType, token_stride: int, head_stride: int, memory: Memory = Memory.HOST,
            stream: int = 0) -> _abi.sr_kv_io:
        io = defaults(_abi.sr_kv_io)
        io.dtype = dtype
        io.token_stride = int64(token_stride, "token_stride")
        io.head_stride = int64(head_stride, "head_stride")
        io.memory = memory
        io.stream = stream or None
        return io

    # ------------------------------------------------------------------ decode

    def decode(self, seq_ids, layer: int, q, out: np.ndarray | None = None, *, q_dtype: DType | None = None,
               out_dtype: DType | None = None, scale: float | None = None, routing: Routing | None = None,
               head_skipped_mass: np.ndarray | None = None, head_error_bound: np.ndarray | None = None,
               collect_stats: bool = False, sink_logits=None, lse: np.ndarray | None = None,
               window_left: int | None = None, window_sink_tokens: int | None = None,
               logit_soft_cap: float | None = None) -> np.ndarray:
        """One decode step on a CPU context: q [batch][num_q_heads][head_dim] for the sequences
        seq_ids, returns out (allocated as `out_dtype`, default F32, when not given).
        head_skipped_mass / head_error_bound: float32 [batch][num_q_heads] arrays to fill with the
        softmax mass routing skipped and the certified relative error bound.

        Attention variants (library 0.3.0; unset = the library's defaults, none of them):
        sink_logits: [num_q_heads] learned sink logits (gpt-oss), converted to float32: exp(sink)
        joins each head's softmax denominator with no value; -inf = no sink for that head.
        lse: a float32 [batch][num_q_heads] array to fill with the natural log of each head's whole
        softmax denominator (sink included), which merge_attention_states takes.
        window_left: attend to the last window_left + 1 tokens only (-1 = every token);
        window_sink_tokens: with a window, also the first window_sink_tokens tokens.
        logit_soft_cap: > 0 turns each logit s into cap * tanh(s / cap) (Gemma 2); 0 = none."""
        if self._backend != Backend.CPU:
            raise ValueError(f"decode() takes host arrays, but this cache lives on the {self._backend.name} "
                             "backend: pass device pointers to decode_device()")
        ids = sequence_ids(seq_ids)
        q = np.asarray(q)
        if q.ndim != 3:
            raise ValueError(f"q has shape {q.shape}, expected {_QKV_LAYOUT}")
        shape = (len(ids), q.shape[1], self.head_dim)
        q, q_dtype = _buffers.contiguous_input(q, shape, "q", _QKV_LAYOUT, q_dtype)
        if out is None:
            out_dtype = DType.F32 if out_dtype is None else DType(out_dtype)
            out = np.empty(shape, dtype=numpy_dtype(out_dtype))
        else:
            out_dtype = dtype_of(out, out_dtype, "out")
            out = _buffers.contiguous_output(out, shape, "out", _QKV_LAYOUT, out.dtype)
        per_head = {}
        for name, array in (("head_skipped_mass", head_skipped_mass), ("head_error_bound", head_error_bound),
                            ("lse", lse)):
            if array is not None:
                array = _buffers.contiguous_output(array, shape[:2], name, _HEAD_LAYOUT, np.dtype(np.float32))
            per_head[name] = array
        if sink_logits is not None:
            sink_logits = _buffers.float32_input(sink_logits, shape[1:2], "sink_logits", "[num_q_heads]")
        args = decode_args(layer, ids, shape[1], routing, scale, collect_stats, stream=0, window_left=window_left,
                           window_sink_tokens=window_sink_tokens, logit_soft_cap=logit_soft_cap)
        args.q, args.q_dtype = q.ctypes.data, q_dtype
        args.out, args.out_dtype = out.ctypes.data, out_dtype
        for name, array in per_head.items():
            setattr(args, name, array.ctypes.data if array is not None else None)
        args.sink_logits = sink_logits.ctypes.data if sink_logits is not None else None
        self._decode(args)
        return out

    def decode_device(self, seq_ids, layer: int, num_q_heads: int, q_ptr: int, out_ptr: int, *,
                      q_dtype: DType = DType.F32, out_dtype: DType = DType.F32, stream: int = 0,
                      scale: float | None = None, routing: Routing | None = None, head_skipped_mass_ptr: int = 0,
                      head_error_bound_ptr: int = 0, collect_stats: bool = False, sink_logits_ptr: int = 0,
                      lse_ptr: int = 0, window_left: int | None = None, window_sink_tokens: int | None = None,
                      logit_soft_cap: float | None = None) -> None:
        """One decode step on buffers in the context's memory, given as raw pointers: device
        pointers for GPU contexts (torch: tensor.data_ptr(); nothing is copied), host pointers for
        the CPU. q / out: contiguous [batch][num_q_heads][head_dim]; the per-head pointers (0 =
        none) float32 [batch][num_q_heads] (lse_ptr too); sink_logits_ptr float32 [num_q_heads].
        On a GPU the step is asynchronous on `stream` (an int handle such as
        torch.cuda.current_stream().cuda_stream; 0 = the context's stream); GPU backends refuse
        the attention variants (sinks, lse, window, soft cap) for now. The caller keeps the
        buffers alive and correctly sized: the library cannot check them."""
        ids = sequence_ids(seq_ids)
        args = decode_args(layer, ids, num_q_heads, routing, scale, collect_stats, stream, window_left=window_left,
                           window_sink_tokens=window_sink_tokens, logit_soft_cap=logit_soft_cap)
        args.q, args.q_dtype = q_ptr or None, DType(q_dtype)
        args.out, args.out_dtype = out_ptr or None, DType(out_dtype)
        args.head_skipped_mass = head_skipped_mass_ptr or None
        args.head_error_bound = head_error_bound_ptr or None
        args.sink_logits = sink_logits_ptr or None
        args.lse = lse_ptr or None
        self._decode(args)

    def _decode(self, args: _abi.sr_decode_args) -> None:
        cache = self._require_open()
        check(self._lib.sr_decode_step(self._context._handle, cache, ctypes.byref(args)))
