package sinkrouter

import (
	"math"
	"math/rand"
	"testing"
	"unsafe"

	"sinkrouter.dev/sinkrouter/internal/workload"
)

// requireWithinFP8Rounding checks each stored element against the appended one: E4M3 keeps 3
// mantissa bits (2^-4 relative) and its subnormal step is 2^-9 of the row's scale s = amax / 448
// (half of it, 2^-10 s, absolute). A row is one token's K (or V) of one kv-head.
func requireWithinFP8Rounding(t *testing.T, name string, appended, stored []float32, headDim int) {
	t.Helper()
	for row := 0; row*headDim < len(appended); row++ {
		x := appended[row*headDim : (row+1)*headDim]
		amax := 0.0
		for _, e := range x {
			amax = math.Max(amax, math.Abs(float64(e)))
		}
		s := amax / 448
		for d, e := range x {
			got, want := float64(stored[row*headDim+d]), float64(e)
			allowed := (math.Ldexp(math.Abs(want), -4) + math.Ldexp(s, -10)) * (1 + 1e-6)
			if math.Abs(got-want) > allowed {
				t.Fatalf("%s row %d element %d: appended %g, read back %g, |error| %g > %g",
					name, row, d, want, got, math.Abs(got-want), allowed)
			}
		}
	}
}

// An FP8 cache takes f32 K/V, gives them back within E4M3's rounding, and decodes dense over
// what it holds as float64 attention over the read-back values does.
func TestFP8CacheRoundTripAndDenseDecode(t *testing.T) {
	const H, group, D, tokens = 2, 4, 128, 300
	if DTypeFP8E4M3.Size() != 1 || DTypeFP8E4M3.String() != "fp8_e4m3" {
		t.Fatalf("DTypeFP8E4M3: size %d, name %q; want 1, fp8_e4m3", DTypeFP8E4M3.Size(), DTypeFP8E4M3)
	}
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, H, D, 16, 1024, DTypeFP8E4M3)
	if cache.Options().DType != DTypeFP8E4M3 {
		t.Fatalf("cache dtype %s, want fp8_e4m3", cache.Options().DType)
	}
	rng := rand.New(rand.NewSource(81))
	k := workload.Gaussian(rng, tokens*H*D)
	v := workload.Gaussian(rng, tokens*H*D)
	seq := must(cache.AddSequence())(t)
	if err := cache.AppendF32(seq, 0, k, v); err != nil {
		t.Fatal(err)
	}
	kStored, vStored := make([]float32, len(k)), make([]float32, len(v))
	if err := cache.ReadF32(seq, 0, 0, kStored, vStored); err != nil {
		t.Fatal(err)
	}
	requireWithinFP8Rounding(t, "K", k, kStored, D)
	requireWithinFP8Rounding(t, "V", v, vStored, D)
	exact := true
	for i := range k {
		exact = exact && k[i] == kStored[i]
	}
	if exact {
		t.Fatal("the FP8 cache gave f32 K back exactly: it did not quantize")
	}

	numQHeads := H * group
	q := workload.Gaussian(rng, numQHeads*D)
	want := workload.Attention(q, kStored, vStored, numQHeads, H, D, tokens, 1/math.Sqrt(D))
	out := filled(len(q), float32(math.NaN())) // rows the step does not write stay NaN
	if err := ctx.Decode(cache, 0, []SeqID{seq}, numQHeads, q, out, nil); err != nil {
		t.Fatal(err)
	}
	for h := 0; h < numQHeads; h++ {
		if e := workload.RelativeError(out[h*D:(h+1)*D], want[h*D:(h+1)*D]); !(e < 1e-4) {
			t.Fatalf("q-head %d: relative error %g against float64 over the stored K/V, want < 1e-4", h, e)
		}
	}
}

// FP8 is a cache element type only: the library refuses it for q, and the 16-bit transfers
// refuse it before calling the library.
func TestFP8IsRefusedAsABufferType(t *testing.T) {
	const H, D = 1, 64
	ctx := newCPUContext(t)
	cache := newCache(t, ctx, H, D, 16, 64, DTypeFP8E4M3)
	seq := must(cache.AddSequence())(t)
	row := filled(H*D, 0.5)
	if err := cache.AppendF32(seq, 0, row, row); err != nil {
		t.Fatal(err)
	}
	qFP8 := make([]uint8, H*D) // the buffer's bytes do not matter: the dtype is refused first
	out := filled(H*D, float32(math.NaN()))
	err := ctx.decode("Context.Decode", cache, 0, []SeqID{seq}, H,
		hostBuffer{unsafe.Pointer(&qFP8[0]), len(qFP8), DTypeFP8E4M3},
		hostBuffer{unsafe.Pointer(&out[0]), len(out), DTypeF32}, nil)
	requireError(t, err, StatusUnsupported, "q_dtype")
	for _, o := range out {
		if !math.IsNaN(float64(o)) {
			t.Fatal("a refused decode wrote its output")
		}
	}
	bits := make([]uint16, H*D)
	requireError(t, cache.AppendBits(seq, 0, DTypeFP8E4M3, bits, bits), StatusInvalidArgument, "dtype = fp8_e4m3")
	requireError(t, cache.ReadBits(seq, 0, 0, DTypeFP8E4M3, bits, nil), StatusInvalidArgument, "dtype = fp8_e4m3")
}
