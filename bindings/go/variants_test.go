package sinkrouter

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"sinkrouter.dev/sinkrouter/internal/workload"
)

// variant is the attention variants of one decode step as the float64 reference takes them.
type variant struct {
	sinkLogits       []float32 // [numQHeads], nil = no sinks; -inf = none for that head
	windowLeft       int       // -1 = every token
	windowSinkTokens int
	softCap          float64 // 0 = none
}

// variantAttention is float64 attention of one query token over one sequence with the
// variants: which tokens are attended (the last windowLeft + 1 and the first
// windowSinkTokens), logits scale * q.k soft-capped, and exp(sink) in the denominator with no
// value. q is [numQHeads][D], k and v [tokens][kvHeads][D]. Returns out [numQHeads][D] and
// each head's lse, the log of its whole denominator.
func variantAttention(q, k, v []float32, numQHeads, kvHeads, D, tokens int, scale float64, vr variant) (out, lse []float64) {
	var attended []int
	windowBegin, keptEnd := 0, 0
	if vr.windowLeft >= 0 {
		windowBegin = tokens - 1 - vr.windowLeft
		if windowBegin < 0 {
			windowBegin = 0
		}
		keptEnd = vr.windowSinkTokens
		if keptEnd > windowBegin {
			keptEnd = windowBegin
		}
	}
	for t := 0; t < tokens; t++ {
		if t < keptEnd || t >= windowBegin {
			attended = append(attended, t)
		}
	}
	group := numQHeads / kvHeads
	out, lse = make([]float64, numQHeads*D), make([]float64, numQHeads)
	logits := make([]float64, len(attended))
	for h := 0; h < numQHeads; h++ {
		kvh := h / group
		sink := math.Inf(-1)
		if vr.sinkLogits != nil {
			sink = float64(vr.sinkLogits[h])
		}
		m := sink
		for i, t := range attended {
			dot := 0.0
			for d := 0; d < D; d++ {
				dot += float64(q[h*D+d]) * float64(k[(t*kvHeads+kvh)*D+d])
			}
			s := dot * scale
			if vr.softCap > 0 {
				s = vr.softCap * math.Tanh(s/vr.softCap)
			}
			logits[i] = s
			m = math.Max(m, s)
		}
		l := 0.0
		if !math.IsInf(sink, -1) {
			l = math.Exp(sink - m)
		}
		oh := out[h*D:][:D]
		for i, t := range attended {
			w := math.Exp(logits[i] - m)
			l += w
			for d := 0; d < D; d++ {
				oh[d] += w * float64(v[(t*kvHeads+kvh)*D+d])
			}
		}
		for d := range oh {
			oh[d] /= l
		}
		lse[h] = m + math.Log(l)
	}
	return out, lse
}

// requireLSE checks each head's lse within 1e-5 of the reference, relative to max(1, |lse|).
func requireLSE(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	for h := range want {
		if diff := math.Abs(float64(got[h]) - want[h]); !(diff <= 1e-5*math.Max(1, math.Abs(want[h]))) {
			t.Fatalf("%s: lse of row %d is %g, want %g (|difference| %g)", what, h, got[h], want[h], diff)
		}
	}
}

// requireRows checks each row of headDim values within 1e-5 relative error of the reference.
func requireRows[T float32 | float64](t *testing.T, what string, got []float32, want []T, headDim int) {
	t.Helper()
	for r := 0; r*headDim < len(want); r++ {
		if e := workload.RelativeError(got[r*headDim:][:headDim], want[r*headDim:][:headDim]); !(e < 1e-5) {
			t.Fatalf("%s: row %d has relative error %g, want < 1e-5", what, r, e)
		}
	}
}

func TestAttentionVariantDefaultsAreTheLibrarys(t *testing.T) {
	o := DefaultDecodeOptions()
	if o.WindowLeft != -1 || o.WindowSinkTokens != 0 || o.LogitSoftCap != 0 || o.SinkLogits != nil || o.LSE != nil {
		t.Fatalf("DefaultDecodeOptions() = %+v: want WindowLeft -1, WindowSinkTokens 0, LogitSoftCap 0, no buffers", o)
	}
}

// Learned sinks, a sliding window keeping its first tokens, a logit soft cap and the lse, on a
// batch whose sequences are longer than, about as long as and shorter than the window,
// against float64 attention over the K/V read back from the cache.
func TestAttentionVariantsMatchFloat64(t *testing.T) {
	const kvHeads, group, D = 2, 2, 64
	const numQHeads = kvHeads * group
	lengths := []int{300, 41, 5}
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, kvHeads, D, 16, 512, DTypeF32)
	rng := rand.New(rand.NewSource(41))
	seqs := make([]SeqID, len(lengths))
	for b, length := range lengths {
		seqs[b] = must(cache.AddSequence())(t)
		k, v := workload.Gaussian(rng, length*kvHeads*D), workload.Gaussian(rng, length*kvHeads*D)
		if err := cache.AppendF32(seqs[b], 0, k, v); err != nil {
			t.Fatal(err)
		}
	}
	q := workload.Gaussian(rng, len(lengths)*numQHeads*D)
	for i := range q {
		q[i] *= 3 // logits of a few units, so that the soft cap bends them
	}
	vr := variant{
		sinkLogits:       []float32{0.5, float32(math.Inf(-1)), 2, -1},
		windowLeft:       40,
		windowSinkTokens: 4,
		softCap:          4,
	}
	options := DefaultDecodeOptions()
	options.SinkLogits = vr.sinkLogits
	options.WindowLeft, options.WindowSinkTokens = int32(vr.windowLeft), int32(vr.windowSinkTokens)
	options.LogitSoftCap = float32(vr.softCap)
	out := filled(len(q), float32(math.NaN()))
	options.LSE = filled(len(lengths)*numQHeads, float32(math.NaN()))
	if err := ctx.Decode(cache, 0, seqs, numQHeads, q, out, &options); err != nil {
		t.Fatal(err)
	}

	scale := 1 / math.Sqrt(D)
	for b, length := range lengths {
		k, v := make([]float32, length*kvHeads*D), make([]float32, length*kvHeads*D)
		if err := cache.ReadF32(seqs[b], 0, 0, k, v); err != nil {
			t.Fatal(err)
		}
		qb := q[b*numQHeads*D:][:numQHeads*D]
		want, wantLSE := variantAttention(qb, k, v, numQHeads, kvHeads, D, length, scale, vr)
		what := fmt.Sprintf("sequence %d (%d tokens)", b, length)
		requireRows(t, what, out[b*numQHeads*D:][:numQHeads*D], want, D)
		requireLSE(t, what, options.LSE[b*numQHeads:][:numQHeads], wantLSE)

		// The variants change this sequence's attention: the test would notice one ignored.
		if b == 0 {
			for name, without := range map[string]variant{
				"sinks":       {windowLeft: vr.windowLeft, windowSinkTokens: vr.windowSinkTokens, softCap: vr.softCap},
				"window":      {sinkLogits: vr.sinkLogits, windowLeft: -1, softCap: vr.softCap},
				"kept tokens": {sinkLogits: vr.sinkLogits, windowLeft: vr.windowLeft, softCap: vr.softCap},
				"soft cap":    {sinkLogits: vr.sinkLogits, windowLeft: vr.windowLeft, windowSinkTokens: vr.windowSinkTokens},
			} {
				other, otherLSE := variantAttention(qb, k, v, numQHeads, kvHeads, D, length, scale, without)
				differs := 0.0
				for h := 0; h < numQHeads; h++ {
					differs = math.Max(differs, math.Abs(otherLSE[h]-wantLSE[h]))
					e := workload.RelativeError(out[h*D:][:D], other[h*D:][:D])
					differs = math.Max(differs, e)
				}
				if !(differs > 1e-3) {
					t.Fatalf("without %s the reference differs by only %g: the test does not exercise it", name, differs)
				}
			}
		}
	}
}

// One sequence split into shards, each appended as its own sequence and decoded with its lse,
// merges into the whole sequence's output and lse; a learned sink goes with one shard only.
func TestMergingShardsGivesTheWholeSequence(t *testing.T) {
	const kvHeads, group, D, length = 2, 2, 64, 300
	const numQHeads = kvHeads * group
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, kvHeads, D, 16, 4*length, DTypeF32)
	rng := rand.New(rand.NewSource(43))
	k, v := workload.Gaussian(rng, length*kvHeads*D), workload.Gaussian(rng, length*kvHeads*D)
	whole := must(cache.AddSequence())(t)
	if err := cache.AppendF32(whole, 0, k, v); err != nil {
		t.Fatal(err)
	}
	q := workload.Gaussian(rng, numQHeads*D)
	sinks := []float32{1, float32(math.Inf(-1)), -0.5, 3}
	row := kvHeads * D

	for _, cuts := range [][]int{{0, 137, length}, {0, 90, 200, length}} {
		for _, withSinks := range []bool{false, true} {
			name := fmt.Sprintf("%d_shards_sinks_%v", len(cuts)-1, withSinks)
			t.Run(name, func(t *testing.T) {
				base := DefaultDecodeOptions()
				base.LogitSoftCap = 6
				wholeOptions := base
				if withSinks {
					wholeOptions.SinkLogits = sinks
				}
				wholeOut := filled(numQHeads*D, float32(math.NaN()))
				wholeOptions.LSE = filled(numQHeads, float32(math.NaN()))
				if err := ctx.Decode(cache, 0, []SeqID{whole}, numQHeads, q, wholeOut, &wholeOptions); err != nil {
					t.Fatal(err)
				}

				var states []AttentionState
				for i := 0; i+1 < len(cuts); i++ {
					shard := must(cache.AddSequence())(t)
					t.Cleanup(func() { cache.RemoveSequence(shard) })
					if err := cache.AppendF32(shard, 0, k[cuts[i]*row:cuts[i+1]*row], v[cuts[i]*row:cuts[i+1]*row]); err != nil {
						t.Fatal(err)
					}
					options := base
					if withSinks && i == 0 {
						options.SinkLogits = sinks
					}
					state := AttentionState{
						Out:   filled(numQHeads*D, float32(math.NaN())),
						LSE:   filled(numQHeads, float32(math.NaN())),
						Bound: filled(numQHeads, float32(math.NaN())),
					}
					options.LSE, options.HeadErrorBound = state.LSE, state.Bound
					if err := ctx.Decode(cache, 0, []SeqID{shard}, numQHeads, q, state.Out, &options); err != nil {
						t.Fatal(err)
					}
					states = append(states, state)
				}

				out := filled(numQHeads*D, float32(math.NaN()))
				lse := filled(numQHeads, float32(math.NaN()))
				bound := filled(numQHeads, float32(math.NaN()))
				if err := ctx.MergeAttentionStates(D, states, out, lse, bound); err != nil {
					t.Fatal(err)
				}
				wantLSE := make([]float64, numQHeads)
				for h := range wantLSE {
					wantLSE[h] = float64(wholeOptions.LSE[h])
				}
				requireRows(t, "merged output against the whole sequence's", out, wholeOut, D)
				requireLSE(t, "merged lse against the whole sequence's", lse, wantLSE)
				for h, b := range bound {
					if b != 0 {
						t.Fatalf("merged bound of row %d is %g; every state was exact", h, b)
					}
				}
				// Sanity: no single shard is the whole answer.
				if e := workload.RelativeError(states[0].Out, wholeOut); !(e > 1e-2) {
					t.Fatalf("the first shard alone is within %g of the whole sequence", e)
				}

				// The output may be one of the states' outputs: the same bits come back.
				if err := ctx.MergeAttentionStates(D, states, states[0].Out, nil, nil); err != nil {
					t.Fatal(err)
				}
				for i := range out {
					if math.Float32bits(out[i]) != math.Float32bits(states[0].Out[i]) {
						t.Fatalf("merged in place, out[%d] = %g; merged apart, %g", i, states[0].Out[i], out[i])
					}
				}
			})
		}
	}
}

// A state's certified bound carries into the merged one: a routed shard merged with an exact
// one gives a bound the true error stays within, and an all-exact merge has bound 0.
func TestMergedBoundCoversARoutedState(t *testing.T) {
	f := newSinkFixture(t)
	D, heads := f.data.HeadDim, f.numQHeads
	// The sink-structured sequence, and a second shard of Gaussian keys in a cache of its own
	// (states merge whichever cache they came from).
	rng := rand.New(rand.NewSource(47))
	const extra = 64
	k := workload.Gaussian(rng, extra*f.data.KVHeads*D)
	v := workload.Gaussian(rng, extra*f.data.KVHeads*D)
	secondCache := newCache(t, f.ctx, int32(f.data.KVHeads), int32(D), 16, extra, DTypeF32)
	second := must(secondCache.AddSequence())(t)
	if err := secondCache.AppendF32(second, 0, k, v); err != nil {
		t.Fatal(err)
	}
	decode := func(cache *KvCache, seq SeqID, options DecodeOptions) AttentionState {
		t.Helper()
		s := AttentionState{Out: make([]float32, heads*D), LSE: make([]float32, heads), Bound: make([]float32, heads)}
		options.LSE, options.HeadErrorBound = s.LSE, s.Bound
		if err := f.ctx.Decode(cache, 0, []SeqID{seq}, heads, f.data.Q, s.Out, &options); err != nil {
			t.Fatal(err)
		}
		return s
	}
	routedOptions := DefaultDecodeOptions()
	routedOptions.Routing, routedOptions.ErrorBudget = RoutingBudget, 1e-2
	exactFirst, routedFirst := decode(f.cache, f.seq, DefaultDecodeOptions()), decode(f.cache, f.seq, routedOptions)
	exactSecond := decode(secondCache, second, DefaultDecodeOptions())
	// The lse is exact even where routing skipped V: both first states have the same one.
	requireLSE(t, "routed lse against dense", routedFirst.LSE, toFloat64(exactFirst.LSE))

	exact, routed := make([]float32, heads*D), make([]float32, heads*D)
	exactBound, routedBound := make([]float32, heads), make([]float32, heads)
	if err := f.ctx.MergeAttentionStates(D, []AttentionState{exactFirst, {Out: exactSecond.Out, LSE: exactSecond.LSE}},
		exact, nil, exactBound); err != nil {
		t.Fatal(err)
	}
	if err := f.ctx.MergeAttentionStates(D, []AttentionState{routedFirst, exactSecond}, routed, nil, routedBound); err != nil {
		t.Fatal(err)
	}
	anyBound := false
	for h := 0; h < heads; h++ {
		trueError := workload.RelativeError(routed[h*D:][:D], exact[h*D:][:D])
		if exactBound[h] != 0 {
			t.Fatalf("row %d: all-exact merge has bound %g", h, exactBound[h])
		}
		if !(trueError <= float64(routedBound[h])+1e-5) || !(routedBound[h] >= 0) {
			t.Fatalf("row %d: merged true error %g, merged bound %g", h, trueError, routedBound[h])
		}
		anyBound = anyBound || routedBound[h] > 0
	}
	if !anyBound {
		t.Fatalf("no merged row carries a bound, though routing skipped mass in the first state")
	}
}

func toFloat64(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = float64(x)
	}
	return out
}

func TestAttentionVariantAndMergeErrors(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D, group = 2, 64, 2
	cache := newCache(t, ctx, H, D, 16, 64, DTypeF32)
	seq := must(cache.AddSequence())(t)
	row := workload.Gaussian(rand.New(rand.NewSource(5)), 3*H*D)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	numQHeads := H * group
	q, out := make([]float32, numQHeads*D), make([]float32, numQHeads*D)
	decode := func(edit func(*DecodeOptions)) error {
		options := DefaultDecodeOptions()
		edit(&options)
		return ctx.Decode(cache, 0, []SeqID{seq}, numQHeads, q, out, &options)
	}
	requireError(t, decode(func(o *DecodeOptions) { o.WindowLeft = -2 }), StatusOutOfRange, "window_left = -2")
	requireError(t, decode(func(o *DecodeOptions) { o.LogitSoftCap = -1 }), StatusOutOfRange, "logit_soft_cap = -1")
	requireError(t, decode(func(o *DecodeOptions) { o.LogitSoftCap = float32(math.NaN()) }), StatusOutOfRange, "logit_soft_cap")
	requireError(t, decode(func(o *DecodeOptions) { o.WindowSinkTokens = 4 }), StatusInvalidArgument, "window_sink_tokens = 4")
	requireError(t, decode(func(o *DecodeOptions) { o.WindowLeft, o.WindowSinkTokens = 8, -1 }),
		StatusOutOfRange, "window_sink_tokens = -1")
	requireError(t, decode(func(o *DecodeOptions) { o.SinkLogits = []float32{0, float32(math.NaN()), 0, 0} }),
		StatusInvalidArgument, "sink_logits[1]")
	requireError(t, decode(func(o *DecodeOptions) { o.SinkLogits = []float32{0, 0, float32(math.Inf(1)), 0} }),
		StatusInvalidArgument, "sink_logits[2]")
	requireError(t, decode(func(o *DecodeOptions) { o.SinkLogits = make([]float32, 3) }),
		StatusInvalidArgument, "len(SinkLogits) = 3")
	requireError(t, decode(func(o *DecodeOptions) { o.LSE = make([]float32, numQHeads+1) }),
		StatusInvalidArgument, "len(LSE) = 5")
	// A refused step writes nothing, lse included.
	lse := filled(numQHeads, float32(math.NaN()))
	requireError(t, decode(func(o *DecodeOptions) { o.LSE, o.WindowLeft = lse, -3 }), StatusOutOfRange, "window_left = -3")
	for h, x := range lse {
		if !math.IsNaN(float64(x)) {
			t.Fatalf("a refused step wrote lse[%d] = %g", h, x)
		}
	}

	state := AttentionState{Out: make([]float32, numQHeads*D), LSE: make([]float32, numQHeads)}
	merged := make([]float32, numQHeads*D)
	requireError(t, ctx.MergeAttentionStates(D, nil, merged, nil, nil), StatusOutOfRange, "num_states = 0")
	many := make([]AttentionState, 65)
	for i := range many {
		many[i] = state
	}
	requireError(t, ctx.MergeAttentionStates(D, many, merged, nil, nil), StatusOutOfRange, "num_states = 65")
	requireError(t, ctx.MergeAttentionStates(0, []AttentionState{state}, merged, nil, nil), StatusOutOfRange, "headDim = 0")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{state}, merged[1:], nil, nil),
		StatusInvalidArgument, "len(out) = 255")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{state, {Out: state.Out, LSE: state.LSE[1:]}}, merged, nil, nil),
		StatusInvalidArgument, "len(states[1].LSE) = 3")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{{Out: state.Out[D:], LSE: state.LSE}}, merged, nil, nil),
		StatusInvalidArgument, "len(states[0].Out) = 192")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{{Out: state.Out, LSE: state.LSE, Bound: make([]float32, 1)}},
		merged, nil, nil), StatusInvalidArgument, "len(states[0].Bound) = 1")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{state}, merged, make([]float32, 2), nil),
		StatusInvalidArgument, "len(lse) = 2")
	requireError(t, ctx.MergeAttentionStates(D, []AttentionState{state}, merged, nil, make([]float32, 9)),
		StatusInvalidArgument, "len(bound) = 9")

	closed := newCPUContext(t)
	closed.Close()
	requireError(t, closed.MergeAttentionStates(D, []AttentionState{state}, merged, nil, nil), StatusInvalidArgument, "closed")
}
