// Package sinkrouter is the Go binding of libsinkrouter, a long-context decode-attention
// runtime with sink-aware routing (see include/sinkrouter/sinkrouter.h for the C API).
//
// The package uses cgo and takes the header and library locations from the environment:
//
//	CGO_CFLAGS="-I<sinkrouter>/include"
//	CGO_LDFLAGS="-L<directory of libsinkrouter.so>"
//	LD_LIBRARY_PATH="<directory of libsinkrouter.so>"   (at run time, or an rpath)
//
// Handles: a Context (backend and threads) and a KvCache (paged K/V storage) created on it.
// Both have an idempotent Close; a finalizer closes a handle that is dropped without Close,
// but the native memory is only returned when the garbage collector gets to it, so close
// handles explicitly. A KvCache keeps its Context reachable. A handle may be used from several
// goroutines at once; a call on a closed handle returns an *Error, never crashes.
//
// Every failure is an *Error carrying the C status and the C library's message (or, for
// checks the binding makes before calling C, a message in the same style). Slice lengths are
// checked against the cache's geometry before any memory reaches C.
//
// DecodeOptions also carries the attention variants (learned sink logits, a sliding window,
// a logit soft cap) and an lse output; Context.MergeAttentionStates merges outputs over
// disjoint key sets by their lse.
//
// Decode and MergeAttentionStates take host slices, so they run on CPU contexts; create one
// with Backend: BackendCPU when a GPU backend may be present (the default, BackendAuto, picks a
// GPU when it finds one).
package sinkrouter

// #cgo LDFLAGS: -lsinkrouter
import "C"
