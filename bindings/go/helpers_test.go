package sinkrouter

import (
	"errors"
	"strings"
	"testing"
)

// newCPUContext opens a CPU context closed at the end of the test.
func newCPUContext(t *testing.T) *Context {
	t.Helper()
	options := DefaultContextOptions()
	options.Backend = BackendCPU
	ctx, err := NewContext(&options)
	if err != nil {
		t.Fatalf("NewContext: %v", err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}

// newCache creates a one-layer cache of the given geometry, closed at the end of the test.
func newCache(t *testing.T, ctx *Context, kvHeads, headDim, pageTokens int32, capacity int64, dtype DType) *KvCache {
	t.Helper()
	options := DefaultKvCacheOptions()
	options.NumLayers = 1
	options.NumKVHeads = kvHeads
	options.HeadDim = headDim
	options.PageTokens = pageTokens
	options.CapacityTokens = capacity
	options.DType = dtype
	cache, err := NewKvCache(ctx, options)
	if err != nil {
		t.Fatalf("NewKvCache: %v", err)
	}
	t.Cleanup(func() { cache.Close() })
	return cache
}

// must(f())(t) is f's value, or the test fails with f's error.
func must[T any](value T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return value
	}
}

// requireError checks err is an *Error of the status whose message names every word given.
func requireError(t *testing.T, err error, status Status, words ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want an *Error of %s", err, err, status)
	}
	if e.Status != status || !errors.Is(err, status) {
		t.Fatalf("got %v, want status %s", err, status)
	}
	for _, word := range words {
		if !strings.Contains(e.Message, word) {
			t.Fatalf("message %q does not name %q", e.Message, word)
		}
	}
}

func filled(n int, value float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = value
	}
	return s
}
