//! Enums, handles and structs of sinkrouter.h. Comments give what the header says a field
//! defaults to; see the header for the full contract.
use core::ffi::c_void;
use core::marker::{PhantomData, PhantomPinned};

c_enums! {
    /// Status of every fallible call. Values are pinned and only ever appended.
    enum sr_status {
        SR_OK = 0,
        SR_ERR_INVALID_ARGUMENT = 1,
        SR_ERR_OUT_OF_RANGE = 2,
        SR_ERR_UNSUPPORTED = 3,
        SR_ERR_OUT_OF_MEMORY = 4,
        SR_ERR_CACHE_FULL = 5,
        SR_ERR_UNKNOWN_SEQUENCE = 6,
        SR_ERR_BACKEND_UNAVAILABLE = 7,
        SR_ERR_DEVICE = 8,
        SR_ERR_STRUCT_SIZE = 9,
        SR_ERR_INTERNAL = 10,
    }

    enum sr_backend {
        SR_BACKEND_AUTO = 0,
        SR_BACKEND_CPU = 1,
        SR_BACKEND_CUDA = 2,
        SR_BACKEND_HIP = 3,
    }

    enum sr_dtype {
        /// `sr_kv_io` only: the cache's own dtype.
        SR_DTYPE_CACHE = -1,
        SR_DTYPE_F32 = 0,
        SR_DTYPE_F16 = 1,
        SR_DTYPE_BF16 = 2,
        /// OCP FP8 E4M3, a cache element type only (`sr_kv_cache_options.dtype`): q, out and
        /// K/V buffers refuse it. One f32 scale per token and kv-head for K and for V. Since 0.2.0.
        SR_DTYPE_FP8_E4M3 = 3,
    }

    /// Where a caller's buffer lives.
    enum sr_memory {
        SR_MEMORY_HOST = 0,
        SR_MEMORY_DEVICE = 1,
    }

    enum sr_routing_mode {
        SR_ROUTING_OFF = 0,
        SR_ROUTING_TAU = 1,
        SR_ROUTING_BUDGET = 2,
    }
}

pub type sr_seq_id = i64;

/// Opaque context handle (only ever behind a pointer).
#[repr(C)]
pub struct sr_context {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque KV cache handle (only ever behind a pointer).
#[repr(C)]
pub struct sr_kv_cache {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

c_structs! {
    struct sr_context_options {
        struct_size: usize,
        /// default SR_BACKEND_AUTO
        backend: sr_backend,
        /// GPU ordinal; default 0; must be 0 for the CPU
        device_index: i32,
        /// CPU worker threads; 0 (default) = all online cores
        num_threads: i32,
        /// GPU stream used when a call passes none; NULL (default) = the default stream
        stream: *mut c_void,
    }

    struct sr_kv_cache_options {
        struct_size: usize,
        /// >= 1 (no default)
        num_layers: i32,
        /// >= 1 (no default)
        num_kv_heads: i32,
        /// 64, 128 or 256 (default 128)
        head_dim: i32,
        /// 16, 32, 64 or 128 (default 16)
        page_tokens: i32,
        /// pool size in tokens (no default)
        capacity_tokens: i64,
        /// element type of K and V (default SR_DTYPE_BF16; SR_DTYPE_FP8_E4M3 adds per-row scales)
        dtype: sr_dtype,
        /// largest batch of one decode step (default 256)
        max_batch: i32,
        /// largest num_q_heads of a decode step; 0 (default) = 8 * num_kv_heads
        max_q_heads: i32,
    }

    /// Layout of the caller's K/V buffers: element (t, h, d) at
    /// base[t * token_stride + h * head_stride + d], strides in elements.
    struct sr_kv_io {
        struct_size: usize,
        /// default SR_DTYPE_CACHE
        dtype: sr_dtype,
        /// 0 (default) = num_kv_heads * head_dim
        token_stride: i64,
        /// 0 (default) = head_dim
        head_stride: i64,
        /// default SR_MEMORY_HOST
        memory: sr_memory,
        /// NULL = the context's stream
        stream: *mut c_void,
    }

    struct sr_decode_args {
        struct_size: usize,
        layer: i32,
        /// >= 1 and <= the cache's max_batch
        batch: i32,
        /// [batch], host memory
        seq_ids: *const sr_seq_id,
        /// a multiple of num_kv_heads
        num_q_heads: i32,
        /// [batch][num_q_heads][head_dim]
        q: *const c_void,
        /// default SR_DTYPE_F32
        q_dtype: sr_dtype,
        /// [batch][num_q_heads][head_dim]
        out: *mut c_void,
        /// default SR_DTYPE_F32
        out_dtype: sr_dtype,
        /// softmax scale; 0 (default) = 1 / sqrt(head_dim)
        scale: f32,
        /// default SR_ROUTING_OFF
        routing: sr_routing_mode,
        /// logit gap for SR_ROUTING_TAU; default 12
        tau: f32,
        /// anchor: first tokens (default 4)
        sink_tokens: i32,
        /// anchor: last tokens (default 64)
        window_tokens: i32,
        /// relative output error budget; default 1e-3
        error_budget: f32,
        /// optional [batch][num_q_heads]: softmax mass whose V was skipped
        head_skipped_mass: *mut f32,
        /// optional [batch][num_q_heads]: certified relative error bound
        head_error_bound: *mut f32,
        /// nonzero: add this step to the context's statistics
        collect_stats: i32,
        /// GPU: NULL = the context's stream
        stream: *mut c_void,
        /// routing applies from this longest-sequence length on; a shorter routed step runs
        /// dense (exact). -1 (default) = the backend's threshold; 0 = route every step
        route_from_tokens: i64,
        /// optional [num_q_heads], the context's memory: a learned sink logit per q-head, whose
        /// exp joins the softmax denominator with no value; NULL (default) = none, -inf = none
        /// for that head. Since 0.3.0, as are the four fields below
        sink_logits: *const f32,
        /// optional [batch][num_q_heads], the context's memory: natural log of each head's whole
        /// softmax denominator (sink included), what sr_merge_attention_states takes
        lse: *mut f32,
        /// sliding window: attend to the last window_left + 1 tokens only; -1 (default) = all
        window_left: i32,
        /// with a window: its first window_sink_tokens tokens are attended too (default 0)
        window_sink_tokens: i32,
        /// > 0: each logit s becomes cap * tanh(s / cap); 0 (default) = none
        logit_soft_cap: f32,
    }

    /// Attention over disjoint key sets merged from (out, lse) pairs into attention over their
    /// union, with the states' certified bounds combined. Since 0.3.0.
    struct sr_merge_args {
        struct_size: usize,
        /// >= 1 and <= 64
        num_states: i32,
        /// (batch entry, q-head) pairs; >= 1
        rows: i64,
        /// >= 1
        head_dim: i32,
        /// [num_states] pointers to [rows][head_dim]
        state_outs: *const *const c_void,
        /// f32, f16 or bf16; default SR_DTYPE_F32
        state_dtype: sr_dtype,
        /// [num_states] pointers to [rows]
        state_lses: *const *const f32,
        /// optional: NULL, or [num_states] pointers to [rows] relative bounds (a NULL entry:
        /// an exact state)
        state_bounds: *const *const f32,
        /// [rows][head_dim]; may be one of the state outputs
        out: *mut c_void,
        /// f32, f16 or bf16; default SR_DTYPE_F32
        out_dtype: sr_dtype,
        /// optional [rows]
        lse: *mut f32,
        /// optional [rows]: the merged certified relative bound
        bound: *mut f32,
        /// GPU: NULL = the context's stream
        stream: *mut c_void,
    }

    /// Statistics summed over the steps run with collect_stats since the last reset.
    struct sr_decode_stats {
        struct_size: usize,
        steps: i64,
        heads: i64,
        blocks_total: i64,
        blocks_v_skipped: i64,
        heads_recomputed: i64,
        max_skipped_mass: f64,
        max_error_bound: f64,
        /// routed steps run dense: shorter than route_from_tokens
        steps_run_dense: i64,
    }
}
