package sinkrouter

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

func TestStatusNames(t *testing.T) {
	if got := StatusCacheFull.String(); got != "SR_ERR_CACHE_FULL" {
		t.Fatalf("StatusCacheFull.String() = %q", got)
	}
	if got := StatusOK.String(); got != "SR_OK" {
		t.Fatalf("StatusOK.String() = %q", got)
	}
}

func TestContextAndCacheOptionErrors(t *testing.T) {
	options := DefaultContextOptions()
	options.Backend = Backend(9)
	_, err := NewContext(&options)
	requireError(t, err, StatusInvalidArgument, "backend = 9")

	options = DefaultContextOptions()
	options.Backend, options.NumThreads = BackendCPU, -1
	_, err = NewContext(&options)
	requireError(t, err, StatusOutOfRange, "num_threads = -1")

	ctx := newCPUContext(t)
	cacheOptions := DefaultKvCacheOptions()
	cacheOptions.NumLayers, cacheOptions.NumKVHeads, cacheOptions.CapacityTokens = 1, 2, 64
	cacheOptions.HeadDim = 100
	_, err = NewKvCache(ctx, cacheOptions)
	requireError(t, err, StatusUnsupported, "head_dim = 100")

	cacheOptions.HeadDim, cacheOptions.NumLayers = 64, 0
	_, err = NewKvCache(ctx, cacheOptions)
	requireError(t, err, StatusOutOfRange, "num_layers = 0")

	_, err = NewKvCache(nil, cacheOptions)
	requireError(t, err, StatusInvalidArgument, "context")
}

func TestTransferErrors(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D = 2, 64
	cache := newCache(t, ctx, H, D, 16, 32, DTypeF32)
	seq := must(cache.AddSequence())(t)
	row := make([]float32, H*D)

	requireError(t, cache.AppendF32(seq, 3, row, row), StatusOutOfRange, "layer = 3")
	requireError(t, cache.AppendF32(seq+100, 0, row, row), StatusUnknownSequence, fmt.Sprint(seq+100))
	requireError(t, cache.AppendF32(seq, 0, row[:D], row[:D]), StatusInvalidArgument, "len(k) = 64")
	requireError(t, cache.AppendF32(seq, 0, row, append(row, row...)), StatusInvalidArgument, "len(v) = 256")
	requireError(t, cache.AppendF32(seq, 0, nil, nil), StatusInvalidArgument, "len(k) = 0")
	requireError(t, cache.AppendBits(seq, 0, DTypeF32, make([]uint16, H*D), make([]uint16, H*D)),
		StatusInvalidArgument, "dtype = f32")

	// Cache full: 32 tokens of capacity; 33 do not fit and nothing is appended.
	tooMany := make([]float32, 33*H*D)
	requireError(t, cache.AppendF32(seq, 0, tooMany, tooMany), StatusCacheFull, "free pages")
	if n := must(cache.SequenceLength(seq, 0))(t); n != 0 {
		t.Fatalf("a failed append left %d tokens", n)
	}

	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	requireError(t, cache.ReadF32(seq, 0, 1, row, nil), StatusOutOfRange, "tokens [1, 2)")
	requireError(t, cache.ReadF32(seq, 0, 0, nil, nil), StatusInvalidArgument, "nothing to read")
	requireError(t, cache.TruncateSequence(seq, 5), StatusOutOfRange, "new_length = 5")
	_, err := cache.ForkSequence(seq + 7)
	requireError(t, err, StatusUnknownSequence, fmt.Sprint(seq+7))
}

func TestDecodeErrors(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D, group = 2, 64, 2
	cache := newCache(t, ctx, H, D, 16, 64, DTypeF32)
	seq := must(cache.AddSequence())(t)
	row := make([]float32, H*D)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	seqs := []SeqID{seq}
	q, out := make([]float32, H*group*D), make([]float32, H*group*D)
	decode := func(numQHeads int, q, out []float32, edit func(*DecodeOptions)) error {
		options := DefaultDecodeOptions()
		if edit != nil {
			edit(&options)
		}
		return ctx.Decode(cache, 0, seqs, numQHeads, q, out, &options)
	}
	requireError(t, decode(H*group, q[1:], out, nil), StatusInvalidArgument, "len(q) = 255")
	requireError(t, decode(H*group, q, out[:D], nil), StatusInvalidArgument, "len(out) = 64")
	requireError(t, decode(3, q[:3*D], out[:3*D], nil), StatusInvalidArgument, "num_q_heads = 3")
	requireError(t, decode(H*group, q, out, func(o *DecodeOptions) { o.Routing, o.Tau = RoutingTau, 0 }),
		StatusOutOfRange, "tau = 0")
	requireError(t, decode(H*group, q, out, func(o *DecodeOptions) { o.Routing, o.ErrorBudget = RoutingBudget, 0 }),
		StatusOutOfRange, "error_budget = 0")
	requireError(t, decode(H*group, q, out, func(o *DecodeOptions) { o.Routing = RoutingMode(7) }),
		StatusInvalidArgument, "routing = 7")
	requireError(t, decode(H*group, q, out, func(o *DecodeOptions) {
		o.Routing, o.SinkTokens, o.WindowTokens = RoutingBudget, 0, 0
	}), StatusInvalidArgument, "sink_tokens")
	// route_from_tokens below -1 is refused, and the refused step writes nothing.
	poisoned := filled(len(out), float32(math.NaN()))
	requireError(t, decode(H*group, q, poisoned, func(o *DecodeOptions) {
		o.Routing, o.ErrorBudget, o.RouteFromTokens = RoutingBudget, 1e-2, -2
	}), StatusOutOfRange, "route_from_tokens = -2")
	for i, x := range poisoned {
		if !math.IsNaN(float64(x)) {
			t.Fatalf("a refused step wrote out[%d] = %g", i, x)
		}
	}
	requireError(t, decode(H*group, q, out, func(o *DecodeOptions) { o.HeadErrorBound = make([]float32, 3) }),
		StatusInvalidArgument, "len(HeadErrorBound) = 3")
	requireError(t, ctx.Decode(cache, 1, seqs, H*group, q, out, nil), StatusOutOfRange, "layer = 1")
	requireError(t, ctx.Decode(cache, 0, nil, H*group, nil, nil, nil), StatusOutOfRange, "batch = 0")
	requireError(t, ctx.Decode(cache, 0, []SeqID{seq + 1}, H*group, q, out, nil), StatusUnknownSequence, fmt.Sprint(seq+1))
	requireError(t, ctx.Decode(nil, 0, seqs, H*group, q, out, nil), StatusInvalidArgument, "cache")
}

// sr_last_error is per OS thread: goroutines failing at once must each get their own message.
func TestErrorMessagesStayWithTheirCall(t *testing.T) {
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, 1, 64, 16, 16, DTypeF32)
	var wg sync.WaitGroup
	failures := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			missing := SeqID(1000 + g)
			want := fmt.Sprintf("sequence %d ", missing)
			for i := 0; i < 300; i++ {
				err := cache.RemoveSequence(missing)
				if e, ok := err.(*Error); !ok || !strings.Contains(e.Message, want) {
					failures <- fmt.Sprintf("goroutine %d: got %v, want a message naming %q", g, err, want)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(failures)
	for failure := range failures {
		t.Error(failure)
	}
}
