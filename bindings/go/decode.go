package sinkrouter

/*
#include "sinkrouter/sinkrouter.h"

// Go may not hand C a struct that holds Go pointers, so the buffers travel as arguments and
// the args struct is completed here, on the C stack, for the duration of the call.
static sr_status sr_go_decode_step(sr_context* context, const sr_kv_cache* cache, sr_decode_args args,
                                   const sr_seq_id* seq_ids, const void* q, void* out,
                                   float* head_skipped_mass, float* head_error_bound,
                                   const float* sink_logits, float* lse) {
  args.seq_ids = seq_ids;
  args.q = q;
  args.out = out;
  args.head_skipped_mass = head_skipped_mass;
  args.head_error_bound = head_error_bound;
  args.sink_logits = sink_logits;
  args.lse = lse;
  return sr_decode_step(context, cache, &args);
}
*/
import "C"

import "unsafe"

// DecodeOptions are everything of a decode step besides the layer, sequences, q and out.
// Start from DefaultDecodeOptions.
type DecodeOptions struct {
	Scale        float32     // softmax scale; 0 = 1 / sqrt(head_dim)
	Routing      RoutingMode // RoutingBudget is the mode to run; RoutingOff is dense and exact
	Tau          float32     // logit gap of RoutingTau (> 0)
	SinkTokens   int32       // anchor set: the first tokens
	WindowTokens int32       // anchor set: the last tokens
	ErrorBudget  float32     // relative error: required (> 0) for RoutingBudget, optional cap for RoutingTau
	// RouteFromTokens: routing applies from this length on; a routed step whose longest sequence
	// is shorter runs dense (exact, counted in DecodeStats.StepsRunDense). -1 (the default) = the
	// backend's own threshold (CPU 0, CUDA/HIP 65536); 0 = route every step.
	RouteFromTokens int64
	// Optional per-head outputs, [batch][num_q_heads] each when not nil.
	HeadSkippedMass []float32 // softmax mass whose V was skipped
	HeadErrorBound  []float32 // certified bound on ||o - o'|| / ||o||
	CollectStats    bool      // add this step to the context's statistics

	// Attention variants (library 0.3.0). Logits are s = Scale * q.k, soft-capped when
	// LogitSoftCap is set.

	// SinkLogits, when not nil, is [numQHeads]: a learned sink logit per q-head (gpt-oss).
	// exp(sink) joins the head's softmax denominator with no value; -inf = no sink for that
	// head (NaN and +inf are refused).
	SinkLogits []float32
	// LSE, when not nil, is an output [batch][num_q_heads]: the natural log of each head's
	// whole softmax denominator, sink included. MergeAttentionStates takes it.
	LSE []float32
	// WindowLeft: a sliding window; each sequence attends to its last WindowLeft + 1 tokens
	// only. -1 (the default) = every token.
	WindowLeft int32
	// WindowSinkTokens: with a window, the first tokens of the sequence are attended too
	// (StreamingLLM); 0 (the default) = none. Refused without a window.
	WindowSinkTokens int32
	// LogitSoftCap > 0: each logit s becomes cap * tanh(s / cap) (Gemma 2); 0 (the default) = none.
	LogitSoftCap float32
}

// DefaultDecodeOptions holds the C library's defaults (sr_decode_args_default): dense.
func DefaultDecodeOptions() DecodeOptions {
	var a C.sr_decode_args
	_ = call("sr_decode_args_default", func() C.sr_status {
		return C.sr_decode_args_default(&a, C.size_t(unsafe.Sizeof(a)))
	})
	return DecodeOptions{
		Scale:            float32(a.scale),
		Routing:          RoutingMode(a.routing),
		Tau:              float32(a.tau),
		SinkTokens:       int32(a.sink_tokens),
		WindowTokens:     int32(a.window_tokens),
		ErrorBudget:      float32(a.error_budget),
		RouteFromTokens:  int64(a.route_from_tokens),
		CollectStats:     a.collect_stats != 0,
		WindowLeft:       int32(a.window_left),
		WindowSinkTokens: int32(a.window_sink_tokens),
		LogitSoftCap:     float32(a.logit_soft_cap),
	}
}

// Decode runs one decode step of attention for a batch of sequences (one query token each) in
// one layer of cache: q and out are [len(seqs)][numQHeads][head_dim] f32, and q-head h reads
// kv-head h / (numQHeads / num_kv_heads). nil options means DefaultDecodeOptions(). The
// buffers are host memory, so the context must run on the CPU backend.
func (c *Context) Decode(cache *KvCache, layer int, seqs []SeqID, numQHeads int, q, out []float32,
	options *DecodeOptions) error {
	return c.decode("Context.Decode", cache, layer, seqs, numQHeads,
		hostBuffer{firstElement(q), len(q), DTypeF32}, hostBuffer{firstElement(out), len(out), DTypeF32}, options)
}

// hostBuffer is a q or out buffer as the C call sees it: its first element, its length in
// elements and their dtype (the library checks the dtype; Decode passes f32 slices).
type hostBuffer struct {
	first  unsafe.Pointer
	length int
	dtype  DType
}

func (c *Context) decode(op string, cache *KvCache, layer int, seqs []SeqID, numQHeads int, q, out hostBuffer,
	options *DecodeOptions) error {
	if cache == nil {
		return argumentError(op, StatusInvalidArgument, "cache is nil")
	}
	o := DefaultDecodeOptions()
	if options != nil {
		o = *options
	}
	ctx, err := c.acquire(op)
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	kv, err := cache.acquire(op)
	if err != nil {
		return err
	}
	defer cache.mu.RUnlock()

	if c.backend != BackendCPU {
		return argumentError(op, StatusUnsupported,
			"the context runs on the %s backend, whose decode takes device memory; Go slices need a cpu context",
			c.backend)
	}
	args, err := decodeArgs(op, layer, len(seqs), numQHeads, q.dtype, out.dtype, o)
	if err != nil {
		return err
	}
	if err := checkDecodeBuffers(op, cache.options, len(seqs), numQHeads, q.length, out.length, o); err != nil {
		return err
	}
	seqIDs := (*C.sr_seq_id)(firstElement(seqs))
	return call("sr_decode_step", func() C.sr_status {
		return C.sr_go_decode_step(ctx, kv, args, seqIDs, q.first, out.first,
			(*C.float)(firstElement(o.HeadSkippedMass)), (*C.float)(firstElement(o.HeadErrorBound)),
			(*C.float)(firstElement(o.SinkLogits)), (*C.float)(firstElement(o.LSE)))
	})
}

// decodeArgs fills the scalar fields of sr_decode_args; the buffers are added in C.
func decodeArgs(op string, layer, batch, numQHeads int, qDType, outDType DType, o DecodeOptions) (C.sr_decode_args, error) {
	var a C.sr_decode_args
	_ = call("sr_decode_args_default", func() C.sr_status {
		return C.sr_decode_args_default(&a, C.size_t(unsafe.Sizeof(a)))
	})
	var err error
	if a.layer, err = int32Arg(op, "layer", layer); err != nil {
		return a, err
	}
	if a.batch, err = int32Arg(op, "len(seqs)", batch); err != nil {
		return a, err
	}
	if a.num_q_heads, err = int32Arg(op, "numQHeads", numQHeads); err != nil {
		return a, err
	}
	a.q_dtype = C.sr_dtype(qDType)
	a.out_dtype = C.sr_dtype(outDType)
	a.scale = C.float(o.Scale)
	a.routing = C.sr_routing_mode(o.Routing)
	a.tau = C.float(o.Tau)
	a.sink_tokens = C.int32_t(o.SinkTokens)
	a.window_tokens = C.int32_t(o.WindowTokens)
	a.error_budget = C.float(o.ErrorBudget)
	a.route_from_tokens = C.int64_t(o.RouteFromTokens)
	a.window_left = C.int32_t(o.WindowLeft)
	a.window_sink_tokens = C.int32_t(o.WindowSinkTokens)
	a.logit_soft_cap = C.float(o.LogitSoftCap)
	a.collect_stats = 0
	if o.CollectStats {
		a.collect_stats = 1
	}
	return a, nil
}

// checkDecodeBuffers makes sure C reads and writes only inside the slices. Shapes the C
// library rejects itself (no sequences, numQHeads < 1) are left to its message.
func checkDecodeBuffers(op string, cache KvCacheOptions, batch, numQHeads int, lenQ, lenOut int, o DecodeOptions) error {
	if batch < 1 || numQHeads < 1 {
		return nil
	}
	heads := batch * numQHeads
	want := heads * int(cache.HeadDim)
	if lenQ != want {
		return argumentError(op, StatusInvalidArgument,
			"len(q) = %d, but batch %d x numQHeads %d x head_dim %d needs %d", lenQ, batch, numQHeads, cache.HeadDim, want)
	}
	if lenOut != want {
		return argumentError(op, StatusInvalidArgument,
			"len(out) = %d, but batch %d x numQHeads %d x head_dim %d needs %d", lenOut, batch, numQHeads, cache.HeadDim, want)
	}
	if o.HeadSkippedMass != nil && len(o.HeadSkippedMass) != heads {
		return argumentError(op, StatusInvalidArgument,
			"len(HeadSkippedMass) = %d, but batch %d x numQHeads %d needs %d", len(o.HeadSkippedMass), batch, numQHeads, heads)
	}
	if o.HeadErrorBound != nil && len(o.HeadErrorBound) != heads {
		return argumentError(op, StatusInvalidArgument,
			"len(HeadErrorBound) = %d, but batch %d x numQHeads %d needs %d", len(o.HeadErrorBound), batch, numQHeads, heads)
	}
	if o.LSE != nil && len(o.LSE) != heads {
		return argumentError(op, StatusInvalidArgument,
			"len(LSE) = %d, but batch %d x numQHeads %d needs %d", len(o.LSE), batch, numQHeads, heads)
	}
	if o.SinkLogits != nil && len(o.SinkLogits) != numQHeads {
		return argumentError(op, StatusInvalidArgument,
			"len(SinkLogits) = %d, but numQHeads is %d", len(o.SinkLogits), numQHeads)
	}
	return nil
}
