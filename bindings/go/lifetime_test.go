package sinkrouter

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestCloseTwiceIsSafe(t *testing.T) {
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, 1, 64, 16, 64, DTypeF32)
	for i := 0; i < 2; i++ {
		if err := cache.Close(); err != nil {
			t.Fatalf("cache.Close #%d: %v", i+1, err)
		}
		if err := ctx.Close(); err != nil {
			t.Fatalf("ctx.Close #%d: %v", i+1, err)
		}
	}
}

func TestUseAfterCloseReturnsAnError(t *testing.T) {
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, 1, 64, 16, 64, DTypeF32)
	seq := must(cache.AddSequence())(t)
	row := make([]float32, 64)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	cache.Close()
	_, err := cache.AddSequence()
	requireError(t, err, StatusInvalidArgument, "cache is closed")
	requireError(t, cache.AppendF32(seq, 0, row, row), StatusInvalidArgument, "cache is closed")
	requireError(t, cache.ReadF32(seq, 0, 0, row, nil), StatusInvalidArgument, "cache is closed")
	_, _, err = cache.Pages()
	requireError(t, err, StatusInvalidArgument, "cache is closed")
	requireError(t, ctx.Decode(cache, 0, []SeqID{seq}, 1, row, row, nil), StatusInvalidArgument, "cache is closed")

	ctx.Close()
	requireError(t, ctx.Decode(cache, 0, []SeqID{seq}, 1, row, row, nil), StatusInvalidArgument, "context is closed")
	_, err = ctx.Stats()
	requireError(t, err, StatusInvalidArgument, "context is closed")
	requireError(t, ctx.ResetStats(), StatusInvalidArgument, "context is closed")
	_, err = ctx.Backend()
	requireError(t, err, StatusInvalidArgument, "context is closed")
	_, err = NewKvCache(ctx, cache.Options())
	requireError(t, err, StatusInvalidArgument, "context is closed")
}

// The native context lives until its last cache is gone, so a cache still works for transfers
// after its Context is closed.
func TestCacheOutlivesClosedContext(t *testing.T) {
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, 1, 64, 16, 64, DTypeF32)
	ctx.Close()
	seq := must(cache.AddSequence())(t)
	row := filled(64, 1.5)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	back := make([]float32, 64)
	if err := cache.ReadF32(seq, 0, 0, back, nil); err != nil || back[0] != 1.5 {
		t.Fatalf("read after the context closed: %v, %g", err, back[0])
	}
}

func TestSequenceCyclesReturnEveryPage(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D = 2, 64
	cache := newCache(t, ctx, H, D, 16, 512, DTypeF32)
	total, free := must2(cache.Pages())(t)
	if total != 32 || free != total {
		t.Fatalf("a new cache has %d of %d pages free, want 32 of 32", free, total)
	}
	chunk := filled(40*H*D, 0.25)
	for cycle := 0; cycle < 200; cycle++ {
		parent := must(cache.AddSequence())(t)
		if err := cache.AppendF32(parent, 0, chunk, chunk); err != nil {
			t.Fatal(err)
		}
		child := must(cache.ForkSequence(parent))(t)
		if err := cache.AppendF32(child, 0, chunk, chunk); err != nil { // copies the shared last page
			t.Fatal(err)
		}
		if err := cache.TruncateSequence(child, 20); err != nil {
			t.Fatal(err)
		}
		if err := cache.RemoveSequence(parent); err != nil {
			t.Fatal(err)
		}
		if err := cache.RemoveSequence(child); err != nil {
			t.Fatal(err)
		}
	}
	if _, free := must2(cache.Pages())(t); free != total {
		t.Fatalf("after 200 cycles %d of %d pages are free", free, total)
	}
}

func TestManyHandleCycles(t *testing.T) {
	row := filled(4*64, 1)
	options := DefaultKvCacheOptions()
	options.NumLayers, options.NumKVHeads, options.HeadDim, options.CapacityTokens = 1, 4, 64, 64
	for cycle := 0; cycle < 200; cycle++ {
		ctx, err := NewContext(&ContextOptions{Backend: BackendCPU, NumThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		cache, err := NewKvCache(ctx, options)
		if err != nil {
			t.Fatal(err)
		}
		seq := must(cache.AddSequence())(t)
		if err := cache.AppendF32(seq, 0, row, row); err != nil {
			t.Fatal(err)
		}
		if err := cache.RemoveSequence(seq); err != nil {
			t.Fatal(err)
		}
		if total, free := must2(cache.Pages())(t); free != total {
			t.Fatalf("cycle %d: %d of %d pages free", cycle, free, total)
		}
		// Every other cycle drops the handles unclosed, for the finalizers.
		if cycle%2 == 0 {
			cache.Close()
			ctx.Close()
		}
	}
	runtime.GC()
	runtime.GC()
}

// A cache keeps its Context reachable: dropping the last other reference to the Context must
// not let its finalizer close it under the cache.
func TestCacheKeepsItsContextAlive(t *testing.T) {
	cache := func() *KvCache {
		ctx, err := NewContext(&ContextOptions{Backend: BackendCPU, NumThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		options := DefaultKvCacheOptions()
		options.NumLayers, options.NumKVHeads, options.HeadDim, options.CapacityTokens = 1, 1, 64, 16
		cache, err := NewKvCache(ctx, options)
		if err != nil {
			t.Fatal(err)
		}
		return cache
	}()
	defer cache.Close()
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	seq := must(cache.AddSequence())(t)
	row := filled(64, 1)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 64)
	if err := cache.Context().Decode(cache, 0, []SeqID{seq}, 1, row, out, nil); err != nil {
		t.Fatalf("decode on the cache's context after GC: %v", err)
	}
}

// Closing a handle while other goroutines use it never crashes: each call either runs or
// reports the closed handle.
func TestCloseWhileInUse(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D = 2, 64
	cache := newCache(t, ctx, H, D, 16, 256, DTypeF32)
	seq := must(cache.AddSequence())(t)
	data := filled(100*H*D, 0.5)
	if err := cache.AppendF32(seq, 0, data, data); err != nil {
		t.Fatal(err)
	}
	var wg, started sync.WaitGroup
	unexpected := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			q, out := filled(2*H*D, 0.1), make([]float32, 2*H*D)
			for i := 0; ; i++ {
				err := ctx.Decode(cache, 0, []SeqID{seq}, 2*H, q, out, nil)
				if i == 0 {
					started.Done()
				}
				var e *Error
				if errors.As(err, &e) && strings.Contains(e.Message, "cache is closed") {
					return
				}
				if err != nil {
					unexpected <- err
					return
				}
			}
		}()
	}
	started.Wait()
	cache.Close()
	wg.Wait()
	close(unexpected)
	for err := range unexpected {
		t.Error(err)
	}
}

func must2[A, B any](a A, b B, err error) func(t *testing.T) (A, B) {
	return func(t *testing.T) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func TestContextDescribesItself(t *testing.T) {
	ctx := newCPUContext(t)
	if backend := must(ctx.Backend())(t); backend != BackendCPU || backend.String() != "cpu" {
		t.Fatalf("Backend() = %v (%d), want cpu", backend, backend)
	}
	if threads := must(ctx.NumThreads())(t); threads < 1 {
		t.Fatalf("NumThreads() = %d", threads)
	}
	if name := must(ctx.DeviceName())(t); !strings.HasPrefix(name, "cpu") {
		t.Fatalf("DeviceName() = %q", name)
	}
	if ABIVersion() != HeaderABIVersion || VersionNumber() == 0 || Version() == "" {
		t.Fatalf("versions: ABI %d (header %d), %d, %q", ABIVersion(), HeaderABIVersion, VersionNumber(), Version())
	}
}
