//! The functions of sinkrouter.h. All return `sr_status` where they can fail; on failure
//! nothing changes and `sr_last_error()` (per thread) says what was wrong.
use core::ffi::{c_char, c_uint, c_void};

use crate::types::*;

c_functions! {
    /// Static name of a status; never NULL.
    fn sr_status_string(status: sr_status) -> *const c_char;
    /// Message of the last failed call on this thread ("" if none); valid until the next call.
    fn sr_last_error() -> *const c_char;

    fn sr_version_number() -> c_uint;
    fn sr_version() -> *const c_char;
    fn sr_abi_version() -> c_uint;

    fn sr_backend_name(backend: sr_backend) -> *const c_char;
    fn sr_dtype_size(dtype: sr_dtype) -> usize;

    fn sr_context_options_default(options: *mut sr_context_options, struct_size: usize) -> sr_status;
    /// `options` may be NULL for all defaults.
    fn sr_context_create(options: *const sr_context_options, out_context: *mut *mut sr_context) -> sr_status;
    /// Every cache created on the context must be destroyed first. Accepts NULL.
    fn sr_context_destroy(context: *mut sr_context);
    fn sr_context_backend(context: *const sr_context, out_backend: *mut sr_backend) -> sr_status;
    fn sr_context_num_threads(context: *const sr_context, out_threads: *mut i32) -> sr_status;
    /// The string lives as long as the context.
    fn sr_context_device_name(context: *const sr_context, out_name: *mut *const c_char) -> sr_status;

    fn sr_kv_cache_options_default(options: *mut sr_kv_cache_options, struct_size: usize) -> sr_status;
    fn sr_kv_cache_create(
        context: *mut sr_context,
        options: *const sr_kv_cache_options,
        out_cache: *mut *mut sr_kv_cache,
    ) -> sr_status;
    /// Accepts NULL.
    fn sr_kv_cache_destroy(cache: *mut sr_kv_cache);
    fn sr_kv_cache_pages(cache: *const sr_kv_cache, out_total_pages: *mut i64, out_free_pages: *mut i64) -> sr_status;

    fn sr_seq_add(cache: *mut sr_kv_cache, out_seq: *mut sr_seq_id) -> sr_status;
    fn sr_seq_fork(cache: *mut sr_kv_cache, parent: sr_seq_id, out_child: *mut sr_seq_id) -> sr_status;
    fn sr_seq_remove(cache: *mut sr_kv_cache, seq: sr_seq_id) -> sr_status;
    fn sr_seq_length(cache: *const sr_kv_cache, seq: sr_seq_id, layer: i32, out_length: *mut i64) -> sr_status;
    fn sr_seq_truncate(cache: *mut sr_kv_cache, seq: sr_seq_id, new_length: i64) -> sr_status;

    fn sr_kv_io_default(io: *mut sr_kv_io, struct_size: usize) -> sr_status;
    /// `io` may be NULL: contiguous [n_tokens][num_kv_heads][head_dim] in the cache's dtype.
    fn sr_kv_append(
        cache: *mut sr_kv_cache,
        seq: sr_seq_id,
        layer: i32,
        n_tokens: i64,
        k: *const c_void,
        v: *const c_void,
        io: *const sr_kv_io,
    ) -> sr_status;
    /// Either of `k_out` and `v_out` may be NULL. Synchronous.
    fn sr_kv_read(
        cache: *const sr_kv_cache,
        seq: sr_seq_id,
        layer: i32,
        first_token: i64,
        n_tokens: i64,
        k_out: *mut c_void,
        v_out: *mut c_void,
        io: *const sr_kv_io,
    ) -> sr_status;

    fn sr_decode_args_default(args: *mut sr_decode_args, struct_size: usize) -> sr_status;
    fn sr_decode_step(context: *mut sr_context, cache: *const sr_kv_cache, args: *const sr_decode_args) -> sr_status;

    /// Since 0.3.0.
    fn sr_merge_args_default(args: *mut sr_merge_args, struct_size: usize) -> sr_status;
    /// Merges attention states over disjoint key sets (sr_merge_args). Since 0.3.0.
    fn sr_merge_attention_states(context: *mut sr_context, args: *const sr_merge_args) -> sr_status;

    fn sr_context_stats(context: *mut sr_context, out_stats: *mut sr_decode_stats, struct_size: usize) -> sr_status;
    fn sr_context_reset_stats(context: *mut sr_context) -> sr_status;
}
