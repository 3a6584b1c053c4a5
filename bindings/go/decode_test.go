package sinkrouter

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"sinkrouter.dev/sinkrouter/internal/workload"
)

// Dense decode of a batch with mixed lengths against float64 attention over the same f32 K/V.
func TestDenseDecodeMatchesFloat64(t *testing.T) {
	shapes := []struct {
		kvHeads, group, headDim, pageTokens int32
		lengths                             []int
	}{
		{2, 1, 64, 16, []int{1, 17, 300}},
		{2, 4, 128, 32, []int{129, 45}},
		{1, 8, 256, 16, []int{77}},
		{4, 4, 128, 64, []int{1000, 64, 3}},
	}
	for i, shape := range shapes {
		t.Run(fmt.Sprintf("kv%d_group%d_d%d_page%d", shape.kvHeads, shape.group, shape.headDim, shape.pageTokens), func(t *testing.T) {
			ctx := newCPUContext(t)
			cache := newCache(t, ctx, shape.kvHeads, shape.headDim, shape.pageTokens, 4096, DTypeF32)
			rng := rand.New(rand.NewSource(int64(10 + i)))
			H, D := int(shape.kvHeads), int(shape.headDim)
			numQHeads := H * int(shape.group)
			seqs := make([]SeqID, len(shape.lengths))
			var q []float32
			var want []float64
			for b, length := range shape.lengths {
				seqs[b] = must(cache.AddSequence())(t)
				k := workload.Gaussian(rng, length*H*D)
				v := workload.Gaussian(rng, length*H*D)
				if err := cache.AppendF32(seqs[b], 0, k, v); err != nil {
					t.Fatal(err)
				}
				qb := workload.Gaussian(rng, numQHeads*D)
				q = append(q, qb...)
				want = append(want, workload.Attention(qb, k, v, numQHeads, H, D, length, 1/math.Sqrt(float64(D)))...)
			}
			out := filled(len(q), float32(math.NaN())) // rows the step does not write stay NaN
			if err := ctx.Decode(cache, 0, seqs, numQHeads, q, out, nil); err != nil {
				t.Fatal(err)
			}
			if e := workload.RelativeError(out, want); !(e < 1e-5) {
				t.Fatalf("relative error %g against float64, want < 1e-5", e)
			}
		})
	}
}

// An explicit scale is passed through: scale s on q equals scale 1 on s*q.
func TestDecodeScaleOption(t *testing.T) {
	ctx := newCPUContext(t)
	const H, D, tokens = 1, 64, 50
	cache := newCache(t, ctx, H, D, 16, 64, DTypeF32)
	seq := must(cache.AddSequence())(t)
	rng := rand.New(rand.NewSource(3))
	k, v := workload.Gaussian(rng, tokens*H*D), workload.Gaussian(rng, tokens*H*D)
	if err := cache.AppendF32(seq, 0, k, v); err != nil {
		t.Fatal(err)
	}
	q := workload.Gaussian(rng, H*D)
	options := DefaultDecodeOptions()
	options.Scale = 0.5
	out := make([]float32, H*D)
	if err := ctx.Decode(cache, 0, []SeqID{seq}, H, q, out, &options); err != nil {
		t.Fatal(err)
	}
	want := workload.Attention(q, k, v, H, H, D, tokens, 0.5)
	if e := workload.RelativeError(out, want); !(e < 1e-5) {
		t.Fatalf("relative error %g with scale 0.5, want < 1e-5", e)
	}
}
