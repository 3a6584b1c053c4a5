package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// bindingABI lists what this binding knows of the C header, in the format of the
// sr_abi_layout_dump program: the layouts of the C structs it fills (as cgo compiled them),
// the values of its Go enum mirrors, and the C functions it wraps. The ABI layout test
// compares the two, so a header change this binding has not taken in fails a test.
func bindingABI() []string {
	var lines []string
	structure := func(name string, size uintptr, fields ...any) {
		lines = append(lines, fmt.Sprintf("struct %s %d", name, size))
		for i := 0; i < len(fields); i += 2 {
			lines = append(lines, fmt.Sprintf("field %s.%s %d", name, fields[i], fields[i+1]))
		}
	}
	var co C.sr_context_options
	structure("sr_context_options", unsafe.Sizeof(co),
		"struct_size", unsafe.Offsetof(co.struct_size),
		"backend", unsafe.Offsetof(co.backend),
		"device_index", unsafe.Offsetof(co.device_index),
		"num_threads", unsafe.Offsetof(co.num_threads),
		"stream", unsafe.Offsetof(co.stream))
	var ko C.sr_kv_cache_options
	structure("sr_kv_cache_options", unsafe.Sizeof(ko),
		"struct_size", unsafe.Offsetof(ko.struct_size),
		"num_layers", unsafe.Offsetof(ko.num_layers),
		"num_kv_heads", unsafe.Offsetof(ko.num_kv_heads),
		"head_dim", unsafe.Offsetof(ko.head_dim),
		"page_tokens", unsafe.Offsetof(ko.page_tokens),
		"capacity_tokens", unsafe.Offsetof(ko.capacity_tokens),
		"dtype", unsafe.Offsetof(ko.dtype),
		"max_batch", unsafe.Offsetof(ko.max_batch),
		"max_q_heads", unsafe.Offsetof(ko.max_q_heads))
	var io C.sr_kv_io
	structure("sr_kv_io", unsafe.Sizeof(io),
		"struct_size", unsafe.Offsetof(io.struct_size),
		"dtype", unsafe.Offsetof(io.dtype),
		"token_stride", unsafe.Offsetof(io.token_stride),
		"head_stride", unsafe.Offsetof(io.head_stride),
		"memory", unsafe.Offsetof(io.memory),
		"stream", unsafe.Offsetof(io.stream))
	var da C.sr_decode_args
	structure("sr_decode_args", unsafe.Sizeof(da),
		"struct_size", unsafe.Offsetof(da.struct_size),
		"layer", unsafe.Offsetof(da.layer),
		"batch", unsafe.Offsetof(da.batch),
		"seq_ids", unsafe.Offsetof(da.seq_ids),
		"num_q_heads", unsafe.Offsetof(da.num_q_heads),
		"q", unsafe.Offsetof(da.q),
		"q_dtype", unsafe.Offsetof(da.q_dtype),
		"out", unsafe.Offsetof(da.out),
		"out_dtype", unsafe.Offsetof(da.out_dtype),
		"scale", unsafe.Offsetof(da.scale),
		"routing", unsafe.Offsetof(da.routing),
		"tau", unsafe.Offsetof(da.tau),
		"sink_tokens", unsafe.Offsetof(da.sink_tokens),
		"window_tokens", unsafe.Offsetof(da.window_tokens),
		"error_budget", unsafe.Offsetof(da.error_budget),
		"head_skipped_mass", unsafe.Offsetof(da.head_skipped_mass),
		"head_error_bound", unsafe.Offsetof(da.head_error_bound),
		"collect_stats", unsafe.Offsetof(da.collect_stats),
		"stream", unsafe.Offsetof(da.stream),
		"route_from_tokens", unsafe.Offsetof(da.route_from_tokens),
		"sink_logits", unsafe.Offsetof(da.sink_logits),
		"lse", unsafe.Offsetof(da.lse),
		"window_left", unsafe.Offsetof(da.window_left),
		"window_sink_tokens", unsafe.Offsetof(da.window_sink_tokens),
		"logit_soft_cap", unsafe.Offsetof(da.logit_soft_cap))
	var ma C.sr_merge_args
	structure("sr_merge_args", unsafe.Sizeof(ma),
		"struct_size", unsafe.Offsetof(ma.struct_size),
		"num_states", unsafe.Offsetof(ma.num_states),
		"rows", unsafe.Offsetof(ma.rows),
		"head_dim", unsafe.Offsetof(ma.head_dim),
		"state_outs", unsafe.Offsetof(ma.state_outs),
		"state_dtype", unsafe.Offsetof(ma.state_dtype),
		"state_lses", unsafe.Offsetof(ma.state_lses),
		"state_bounds", unsafe.Offsetof(ma.state_bounds),
		"out", unsafe.Offsetof(ma.out),
		"out_dtype", unsafe.Offsetof(ma.out_dtype),
		"lse", unsafe.Offsetof(ma.lse),
		"bound", unsafe.Offsetof(ma.bound),
		"stream", unsafe.Offsetof(ma.stream))
	var ds C.sr_decode_stats
	structure("sr_decode_stats", unsafe.Sizeof(ds),
		"struct_size", unsafe.Offsetof(ds.struct_size),
		"steps", unsafe.Offsetof(ds.steps),
		"heads", unsafe.Offsetof(ds.heads),
		"blocks_total", unsafe.Offsetof(ds.blocks_total),
		"blocks_v_skipped", unsafe.Offsetof(ds.blocks_v_skipped),
		"heads_recomputed", unsafe.Offsetof(ds.heads_recomputed),
		"max_skipped_mass", unsafe.Offsetof(ds.max_skipped_mass),
		"max_error_bound", unsafe.Offsetof(ds.max_error_bound),
		"steps_run_dense", unsafe.Offsetof(ds.steps_run_dense))

	enum := func(name string, value int32) {
		lines = append(lines, fmt.Sprintf("enum %s %d", name, value))
	}
	for _, s := range []Status{StatusOK, StatusInvalidArgument, StatusOutOfRange, StatusUnsupported,
		StatusOutOfMemory, StatusCacheFull, StatusUnknownSequence, StatusBackendUnavailable, StatusDevice,
		StatusStructSize, StatusInternal} {
		enum("sr_status."+s.String(), int32(s))
	}
	enum("sr_backend.SR_BACKEND_AUTO", int32(BackendAuto))
	enum("sr_backend.SR_BACKEND_CPU", int32(BackendCPU))
	enum("sr_backend.SR_BACKEND_CUDA", int32(BackendCUDA))
	enum("sr_backend.SR_BACKEND_HIP", int32(BackendHIP))
	enum("sr_dtype.SR_DTYPE_CACHE", int32(DTypeCache))
	enum("sr_dtype.SR_DTYPE_F32", int32(DTypeF32))
	enum("sr_dtype.SR_DTYPE_F16", int32(DTypeF16))
	enum("sr_dtype.SR_DTYPE_BF16", int32(DTypeBF16))
	enum("sr_dtype.SR_DTYPE_FP8_E4M3", int32(DTypeFP8E4M3))
	enum("sr_memory.SR_MEMORY_HOST", int32(memoryHost))
	enum("sr_memory.SR_MEMORY_DEVICE", int32(memoryDevice))
	enum("sr_routing_mode.SR_ROUTING_OFF", int32(RoutingOff))
	enum("sr_routing_mode.SR_ROUTING_TAU", int32(RoutingTau))
	enum("sr_routing_mode.SR_ROUTING_BUDGET", int32(RoutingBudget))

	for _, name := range wrappedFunctions {
		lines = append(lines, "function "+name)
	}
	return lines
}

// wrappedFunctions are the C functions this binding calls.
var wrappedFunctions = []string{
	"sr_status_string", "sr_last_error", "sr_version_number", "sr_version", "sr_abi_version",
	"sr_backend_name", "sr_dtype_size",
	"sr_context_options_default", "sr_context_create", "sr_context_destroy", "sr_context_backend",
	"sr_context_num_threads", "sr_context_device_name",
	"sr_kv_cache_options_default", "sr_kv_cache_create", "sr_kv_cache_destroy", "sr_kv_cache_pages",
	"sr_seq_add", "sr_seq_fork", "sr_seq_remove", "sr_seq_length", "sr_seq_truncate",
	"sr_kv_io_default", "sr_kv_append", "sr_kv_read",
	"sr_decode_args_default", "sr_decode_step", "sr_merge_args_default", "sr_merge_attention_states",
	"sr_context_stats", "sr_context_reset_stats",
}
