package sinkrouter

import (
	"math"
	"testing"

	"sinkrouter.dev/sinkrouter/internal/workload"
)

// routedStep is one decode step's output and per-head reports.
type routedStep struct {
	out, skippedMass, errorBound []float32
}

// sinkFixture is a cache holding one sink-structured sequence and its dense decode output.
type sinkFixture struct {
	ctx       *Context
	cache     *KvCache
	seq       SeqID
	data      *workload.SinkContext
	numQHeads int
	dense     []float32
}

func newSinkFixture(t *testing.T) *sinkFixture {
	t.Helper()
	data := workload.NewSinkContext(4, 4, 128, 4096, 7)
	f := &sinkFixture{ctx: newCPUContext(t), data: data, numQHeads: data.KVHeads * data.Group}
	f.cache = newCache(t, f.ctx, int32(data.KVHeads), int32(data.HeadDim), 16, int64(data.Tokens), DTypeF32)
	f.seq = must(f.cache.AddSequence())(t)
	if err := f.cache.AppendF32(f.seq, 0, data.K, data.V); err != nil {
		t.Fatal(err)
	}
	dense := f.decode(t, DefaultDecodeOptions())
	for h, mass := range dense.skippedMass {
		if mass != 0 || dense.errorBound[h] != 0 {
			t.Fatalf("dense head %d reports skipped mass %g, bound %g; want 0, 0", h, mass, dense.errorBound[h])
		}
	}
	f.dense = dense.out
	return f
}

func (f *sinkFixture) decode(t *testing.T, options DecodeOptions) routedStep {
	t.Helper()
	step := routedStep{
		out:         filled(f.numQHeads*f.data.HeadDim, float32(math.NaN())),
		skippedMass: filled(f.numQHeads, float32(math.NaN())),
		errorBound:  filled(f.numQHeads, float32(math.NaN())),
	}
	options.HeadSkippedMass, options.HeadErrorBound = step.skippedMass, step.errorBound
	if err := f.ctx.Decode(f.cache, 0, []SeqID{f.seq}, f.numQHeads, f.data.Q, step.out, &options); err != nil {
		t.Fatal(err)
	}
	return step
}

// headErrors is each q-head's true relative error ||o' - o|| / ||o|| against the dense output.
func (f *sinkFixture) headErrors(out []float32) []float64 {
	D := f.data.HeadDim
	errs := make([]float64, f.numQHeads)
	for h := range errs {
		errs[h] = workload.RelativeError(out[h*D:][:D], f.dense[h*D:][:D])
	}
	return errs
}

// checkBounds fails unless some mass was skipped and every head's true error is within its
// certified bound; it returns the largest bound.
func (f *sinkFixture) checkBounds(t *testing.T, step routedStep) float64 {
	t.Helper()
	totalSkipped, largestBound, largestError := 0.0, 0.0, 0.0
	for h, trueError := range f.headErrors(step.out) {
		largestError = math.Max(largestError, trueError)
		mass, bound := float64(step.skippedMass[h]), float64(step.errorBound[h])
		if !(mass >= 0 && mass <= 1) || !(bound >= 0) {
			t.Fatalf("head %d: skipped mass %g, bound %g", h, mass, bound)
		}
		if !(trueError <= bound+1e-5) {
			t.Errorf("head %d: true error %g exceeds the certified bound %g", h, trueError, bound)
		}
		totalSkipped += mass
		largestBound = math.Max(largestBound, bound)
	}
	t.Logf("skipped mass %.3g over %d heads, largest bound %.3g, largest true error %.3g",
		totalSkipped, f.numQHeads, largestBound, largestError)
	if !(totalSkipped > 0) {
		t.Fatalf("routing skipped no mass on a sink-structured context")
	}
	return largestBound
}

func TestTauRoutingStaysWithinItsBound(t *testing.T) {
	f := newSinkFixture(t)
	options := DefaultDecodeOptions()
	options.Routing, options.Tau, options.ErrorBudget = RoutingTau, 12, 0
	f.checkBounds(t, f.decode(t, options))

	// With a cap, no head's bound passes it (heads over it are recomputed exactly).
	options.Tau, options.ErrorBudget = 8, 1e-4
	step := f.decode(t, options)
	for h, bound := range step.errorBound {
		if bound > options.ErrorBudget {
			t.Errorf("head %d: bound %g exceeds the cap %g", h, bound, options.ErrorBudget)
		}
	}
}

func TestBudgetRoutingNeverExceedsTheBudget(t *testing.T) {
	f := newSinkFixture(t)
	for _, budget := range []float32{1e-2, 1e-3} {
		options := DefaultDecodeOptions()
		options.Routing, options.ErrorBudget = RoutingBudget, budget
		step := f.decode(t, options)
		f.checkBounds(t, step)
		for h, trueError := range f.headErrors(step.out) {
			if step.errorBound[h] > budget || trueError > float64(budget)+1e-5 {
				t.Errorf("budget %g, head %d: bound %g, true error %g", budget, h, step.errorBound[h], trueError)
			}
		}
	}
}

// The default is the library's: -1, the backend's threshold (0 on the CPU).
func TestRouteFromTokensDefaultsToTheBackendsThreshold(t *testing.T) {
	if got := DefaultDecodeOptions().RouteFromTokens; got != -1 {
		t.Fatalf("DefaultDecodeOptions().RouteFromTokens = %d, want the library's -1", got)
	}
}

// A routed step whose sequence is shorter than RouteFromTokens runs dense: the very bits of
// routing off, nothing skipped, bound 0, counted in StepsRunDense. At the threshold it routes,
// and so does -1 (the CPU's threshold is 0).
func TestRouteFromTokensRunsShorterRoutedStepsDense(t *testing.T) {
	f := newSinkFixture(t)
	length := int64(f.data.Tokens)
	run := func(routeFromTokens int64) (routedStep, DecodeStats) {
		t.Helper()
		if err := f.ctx.ResetStats(); err != nil {
			t.Fatal(err)
		}
		options := DefaultDecodeOptions()
		options.Routing, options.ErrorBudget, options.CollectStats = RoutingBudget, 1e-2, true
		options.RouteFromTokens = routeFromTokens
		step := f.decode(t, options)
		return step, must(f.ctx.Stats())(t)
	}

	below, stats := run(length + 1)
	for i, x := range below.out {
		if math.Float32bits(x) != math.Float32bits(f.dense[i]) {
			t.Fatalf("out[%d] = %g run dense, %g with routing off", i, x, f.dense[i])
		}
	}
	for h := range below.skippedMass {
		if below.skippedMass[h] != 0 || below.errorBound[h] != 0 {
			t.Fatalf("head %d run dense: skipped mass %g, bound %g; want 0, 0", h, below.skippedMass[h], below.errorBound[h])
		}
	}
	if stats.Steps != 1 || stats.StepsRunDense != 1 || stats.BlocksVSkipped != 0 || stats.MaxSkippedMass != 0 ||
		stats.MaxErrorBound != 0 {
		t.Fatalf("stats %+v: want 1 step, run dense, nothing skipped", stats)
	}

	for _, routeFromTokens := range []int64{length, -1} {
		at, stats := run(routeFromTokens)
		if stats.StepsRunDense != 0 || stats.BlocksVSkipped <= 0 {
			t.Fatalf("RouteFromTokens %d: stats %+v: want routed (V blocks skipped, none run dense)", routeFromTokens, stats)
		}
		f.checkBounds(t, at)
	}
}

func TestRoutingStatistics(t *testing.T) {
	f := newSinkFixture(t)
	if err := f.ctx.ResetStats(); err != nil {
		t.Fatal(err)
	}
	options := DefaultDecodeOptions()
	options.Routing, options.ErrorBudget, options.CollectStats = RoutingBudget, 1e-2, true
	steps := []routedStep{f.decode(t, options), f.decode(t, options)}
	stats := must(f.ctx.Stats())(t)
	blocksPerStep := int64(f.data.KVHeads * f.data.Tokens / 16)
	if stats.Steps != 2 || stats.Heads != int64(2*f.numQHeads) || stats.BlocksTotal != 2*blocksPerStep {
		t.Fatalf("stats %+v: want 2 steps, %d heads, %d blocks", stats, 2*f.numQHeads, 2*blocksPerStep)
	}
	t.Logf("stats %+v", stats)
	if stats.BlocksVSkipped <= 0 || stats.SkipFraction() <= 0 || stats.SkipFraction() >= 1 {
		t.Fatalf("stats %+v: want some but not all V blocks skipped", stats)
	}
	largestBound := 0.0
	for _, step := range steps {
		for _, bound := range step.errorBound {
			largestBound = math.Max(largestBound, float64(bound))
		}
	}
	if math.Abs(stats.MaxErrorBound-largestBound) > 1e-6*largestBound || stats.MaxErrorBound > 1e-2 {
		t.Fatalf("stats.MaxErrorBound = %g, per-head bounds reach %g (budget 1e-2)", stats.MaxErrorBound, largestBound)
	}
	// Steps without CollectStats are not counted; a reset zeroes everything.
	options.CollectStats = false
	f.decode(t, options)
	if again := must(f.ctx.Stats())(t); again != stats {
		t.Fatalf("a step without CollectStats changed the stats: %+v -> %+v", stats, again)
	}
	if err := f.ctx.ResetStats(); err != nil {
		t.Fatal(err)
	}
	if zero := must(f.ctx.Stats())(t); zero != (DecodeStats{}) {
		t.Fatalf("stats after ResetStats: %+v", zero)
	}
}
