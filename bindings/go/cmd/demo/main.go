// Demo of the Go binding: loads a sink-structured context (8K tokens, 8 kv-heads, GQA group 4,
// head_dim 128) into a bf16 cache, runs one dense and two routed decode steps, and prints how
// much V the routing skipped, its certified error bound and the error it actually made
// against the dense output. Exits 1 if a measured error passes its bound or nothing was skipped.
package main

import (
	"fmt"
	"math"
	"os"

	"sinkrouter.dev/sinkrouter"
	"sinkrouter.dev/sinkrouter/internal/workload"
)

const (
	kvHeads = 8
	group   = 4
	headDim = 128
	tokens  = 8192
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	options := sinkrouter.DefaultContextOptions()
	options.Backend = sinkrouter.BackendCPU // Decode takes Go (host) slices
	ctx, err := sinkrouter.NewContext(&options)
	if err != nil {
		return err
	}
	defer ctx.Close()
	device, err := ctx.DeviceName()
	if err != nil {
		return err
	}
	fmt.Printf("libsinkrouter %s on %s\n", sinkrouter.Version(), device)

	cacheOptions := sinkrouter.DefaultKvCacheOptions()
	cacheOptions.NumLayers, cacheOptions.NumKVHeads, cacheOptions.HeadDim = 1, kvHeads, headDim
	cacheOptions.CapacityTokens = tokens // dtype: the default, bf16
	cache, err := sinkrouter.NewKvCache(ctx, cacheOptions)
	if err != nil {
		return err
	}
	defer cache.Close()
	seq, err := cache.AddSequence()
	if err != nil {
		return err
	}
	data := workload.NewSinkContext(kvHeads, group, headDim, tokens, 1)
	if err := cache.AppendF32(seq, 0, data.K, data.V); err != nil {
		return err
	}
	fmt.Printf("context: %d tokens, %d kv-heads x %d q-heads each, head_dim %d, %s cache\n",
		tokens, kvHeads, group, headDim, cacheOptions.DType)

	numQHeads := kvHeads * group
	dense := make([]float32, numQHeads*headDim)
	if err := ctx.Decode(cache, 0, []sinkrouter.SeqID{seq}, numQHeads, data.Q, dense, nil); err != nil {
		return err
	}

	tau := sinkrouter.DefaultDecodeOptions()
	tau.Routing, tau.Tau, tau.ErrorBudget = sinkrouter.RoutingTau, 12, 0
	budget := sinkrouter.DefaultDecodeOptions()
	budget.Routing, budget.ErrorBudget = sinkrouter.RoutingBudget, 1e-2
	fmt.Printf("%-22s %12s %14s %14s\n", "routing", "V skipped", "largest bound", "error vs dense")
	for _, mode := range []struct {
		name    string
		options sinkrouter.DecodeOptions
	}{{"tau 12", tau}, {"budget 1e-2", budget}} {
		if err := routed(ctx, cache, seq, data.Q, dense, mode.name, mode.options); err != nil {
			return err
		}
	}
	return nil
}

// routed runs one routed step, prints its statistics and checks the measured error per head
// against the certified bound.
func routed(ctx *sinkrouter.Context, cache *sinkrouter.KvCache, seq sinkrouter.SeqID, q, dense []float32,
	name string, options sinkrouter.DecodeOptions) error {
	numQHeads := len(q) / headDim
	out := make([]float32, len(q))
	options.HeadErrorBound = make([]float32, numQHeads)
	options.CollectStats = true
	if err := ctx.ResetStats(); err != nil {
		return err
	}
	if err := ctx.Decode(cache, 0, []sinkrouter.SeqID{seq}, numQHeads, q, out, &options); err != nil {
		return err
	}
	stats, err := ctx.Stats()
	if err != nil {
		return err
	}
	largestError := 0.0
	for h := 0; h < numQHeads; h++ {
		measured := workload.RelativeError(out[h*headDim:][:headDim], dense[h*headDim:][:headDim])
		largestError = math.Max(largestError, measured)
		if bound := float64(options.HeadErrorBound[h]); measured > bound+1e-5 {
			return fmt.Errorf("%s: head %d's error %.3g exceeds its certified bound %.3g", name, h, measured, bound)
		}
	}
	fmt.Printf("%-22s %11.1f%% %14.3g %14.3g\n", name, 100*stats.SkipFraction(), stats.MaxErrorBound, largestError)
	if stats.BlocksVSkipped == 0 {
		return fmt.Errorf("%s skipped nothing on a sink-structured context", name)
	}
	return nil
}
