package sinkrouter

/*
#include "sinkrouter/sinkrouter.h"

// Go may not hand C memory that holds Go pointers, nor store Go pointers in C memory, so the
// states travel as three contiguous Go buffers ([num_states][rows][head_dim] outputs,
// [num_states][rows] lses and bounds) and the arrays of per-state pointers that
// sr_merge_args takes are built here, on the C stack, for the duration of the call.
// has_bound[i] == 0 marks an exact state (a NULL entry of state_bounds).
enum { SR_GO_MAX_MERGE_STATES = 64 };

static sr_status sr_go_merge_states(sr_context* context, sr_merge_args args, const float* outs,
                                    const float* lses, const float* bounds,
                                    const unsigned char* has_bound, void* out, float* lse,
                                    float* bound) {
  const void* state_outs[SR_GO_MAX_MERGE_STATES];
  const float* state_lses[SR_GO_MAX_MERGE_STATES];
  const float* state_bounds[SR_GO_MAX_MERGE_STATES];
  args.out = out;
  args.lse = lse;
  args.bound = bound;
  // A count the library refuses: let it name num_states (the pointer arrays stay NULL).
  if (args.num_states < 1 || args.num_states > SR_GO_MAX_MERGE_STATES) {
    return sr_merge_attention_states(context, &args);
  }
  const int64_t row_values = args.rows * (int64_t)args.head_dim;
  int any_bound = 0;
  for (int32_t i = 0; i < args.num_states; ++i) {
    state_outs[i] = outs + i * row_values;
    state_lses[i] = lses + i * args.rows;
    state_bounds[i] = has_bound[i] ? bounds + i * args.rows : NULL;
    any_bound |= has_bound[i];
  }
  args.state_outs = state_outs;
  args.state_lses = state_lses;
  args.state_bounds = any_bound ? state_bounds : NULL;
  return sr_merge_attention_states(context, &args);
}
*/
import "C"

import "unsafe"

// maxMergeStates is the most states one sr_merge_attention_states call takes.
const maxMergeStates = 64

// AttentionState is the attention of some rows (pairs of batch entry and q-head) over one set
// of keys: what Decode writes to out with DecodeOptions.LSE (and HeadErrorBound) for a
// sequence holding those keys. States over disjoint key sets merge into the attention over
// their union with MergeAttentionStates.
type AttentionState struct {
	Out []float32 // [rows][head_dim]
	LSE []float32 // [rows]: log of each row's softmax denominator (DecodeOptions.LSE)
	// Bound, when not nil, is [rows]: each row's certified relative error bound
	// (DecodeOptions.HeadErrorBound). nil = an exact state.
	Bound []float32
}

// MergeAttentionStates merges attention outputs computed over disjoint sets of keys (a shared
// prefix and a per-request suffix, or shards of one sequence) into the attention over their
// union: out = sum_i exp(LSE_i - lse) Out_i with lse = log sum_i exp(LSE_i), row by row.
// out is [rows][headDim], so rows = len(out) / headDim; every state must hold that many rows.
// lse and bound, when not nil, are [rows] outputs: the merged log-sum-exp, and the merged
// certified relative error bound (0 where every state is exact). A learned sink
// (DecodeOptions.SinkLogits) belongs in one state only. 1 to 64 states; the slices are host
// memory, so the context must run on the CPU backend. The states are copied into contiguous
// buffers for the call (cgo does not let C take an array of Go pointers), so out may be one
// of the states' Out.
func (c *Context) MergeAttentionStates(headDim int, states []AttentionState, out, lse, bound []float32) error {
	const op = "Context.MergeAttentionStates"
	ctx, err := c.acquire(op)
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	if c.backend != BackendCPU {
		return argumentError(op, StatusUnsupported,
			"the context runs on the %s backend, whose merge takes device memory; Go slices need a cpu context",
			c.backend)
	}
	var a C.sr_merge_args
	_ = call("sr_merge_args_default", func() C.sr_status {
		return C.sr_merge_args_default(&a, C.size_t(unsafe.Sizeof(a)))
	})
	if a.head_dim, err = int32Arg(op, "headDim", headDim); err != nil {
		return err
	}
	if a.num_states, err = int32Arg(op, "len(states)", len(states)); err != nil {
		return err
	}
	a.state_dtype = C.sr_dtype(DTypeF32)
	a.out_dtype = C.sr_dtype(DTypeF32)
	if headDim < 1 {
		return argumentError(op, StatusOutOfRange, "headDim = %d must be >= 1", headDim)
	}
	if len(out) == 0 || len(out)%headDim != 0 {
		return argumentError(op, StatusInvalidArgument,
			"len(out) = %d is not a positive multiple of headDim = %d", len(out), headDim)
	}
	rows := len(out) / headDim
	a.rows = C.int64_t(rows)
	if lse != nil && len(lse) != rows {
		return argumentError(op, StatusInvalidArgument, "len(lse) = %d, but out holds %d rows", len(lse), rows)
	}
	if bound != nil && len(bound) != rows {
		return argumentError(op, StatusInvalidArgument, "len(bound) = %d, but out holds %d rows", len(bound), rows)
	}
	if err := checkMergeStates(op, states, rows, headDim); err != nil {
		return err
	}
	var outs, lses, bounds []float32
	var hasBound []C.uchar
	// A count the library refuses reaches it without copying: its message names num_states.
	if len(states) >= 1 && len(states) <= maxMergeStates {
		outs, lses, bounds, hasBound = packStates(states, rows, headDim)
	}
	return call("sr_merge_attention_states", func() C.sr_status {
		return C.sr_go_merge_states(ctx, a, (*C.float)(firstElement(outs)), (*C.float)(firstElement(lses)),
			(*C.float)(firstElement(bounds)), (*C.uchar)(firstElement(hasBound)), firstElement(out),
			(*C.float)(firstElement(lse)), (*C.float)(firstElement(bound)))
	})
}

// checkMergeStates makes sure every state holds rows rows of headDim values.
func checkMergeStates(op string, states []AttentionState, rows, headDim int) error {
	for i, s := range states {
		if len(s.Out) != rows*headDim {
			return argumentError(op, StatusInvalidArgument,
				"len(states[%d].Out) = %d, but %d rows x headDim %d needs %d", i, len(s.Out), rows, headDim, rows*headDim)
		}
		if len(s.LSE) != rows {
			return argumentError(op, StatusInvalidArgument, "len(states[%d].LSE) = %d, but out holds %d rows", i, len(s.LSE), rows)
		}
		if s.Bound != nil && len(s.Bound) != rows {
			return argumentError(op, StatusInvalidArgument,
				"len(states[%d].Bound) = %d, but out holds %d rows", i, len(s.Bound), rows)
		}
	}
	return nil
}

// packStates lays the states out one after another; bounds is nil when no state has one.
func packStates(states []AttentionState, rows, headDim int) (outs, lses, bounds []float32, hasBound []C.uchar) {
	outs = make([]float32, 0, len(states)*rows*headDim)
	lses = make([]float32, 0, len(states)*rows)
	hasBound = make([]C.uchar, len(states))
	for i, s := range states {
		outs = append(outs, s.Out...)
		lses = append(lses, s.LSE...)
		if s.Bound != nil {
			hasBound[i] = 1
			if bounds == nil {
				bounds = make([]float32, len(states)*rows)
			}
			copy(bounds[i*rows:], s.Bound)
		}
	}
	return outs, lses, bounds, hasBound
}
