package sinkrouter

import (
	"math"
	"math/rand"
	"testing"

	"sinkrouter.dev/sinkrouter/internal/workload"
)

func TestAppendReadRoundTripF32(t *testing.T) {
	ctx := newCPUContext(t)
	const kvHeads, headDim, tokens = 2, 64, 37 // not a multiple of the page
	cache := newCache(t, ctx, kvHeads, headDim, 16, 256, DTypeF32)
	seq := must(cache.AddSequence())(t)
	rng := rand.New(rand.NewSource(1))
	k := workload.Gaussian(rng, tokens*kvHeads*headDim)
	v := workload.Gaussian(rng, tokens*kvHeads*headDim)
	// Two appends, so the second starts inside a page.
	split := 20 * kvHeads * headDim
	if err := cache.AppendF32(seq, 0, k[:split], v[:split]); err != nil {
		t.Fatal(err)
	}
	if err := cache.AppendF32(seq, 0, k[split:], v[split:]); err != nil {
		t.Fatal(err)
	}
	if n := must(cache.SequenceLength(seq, 0))(t); n != tokens {
		t.Fatalf("SequenceLength = %d, want %d", n, tokens)
	}
	kOut := filled(len(k), float32(math.NaN()))
	vOut := filled(len(v), float32(math.NaN()))
	if err := cache.ReadF32(seq, 0, 0, kOut, vOut); err != nil {
		t.Fatal(err)
	}
	for i := range k {
		if kOut[i] != k[i] || vOut[i] != v[i] {
			t.Fatalf("element %d: read (%g, %g), appended (%g, %g)", i, kOut[i], vOut[i], k[i], v[i])
		}
	}
	// A window in the middle, V only.
	row := kvHeads * headDim
	vWindow := make([]float32, 5*row)
	if err := cache.ReadF32(seq, 0, 16, nil, vWindow); err != nil {
		t.Fatal(err)
	}
	for i := range vWindow {
		if vWindow[i] != v[16*row+i] {
			t.Fatalf("window element %d: read %g, appended %g", i, vWindow[i], v[16*row+i])
		}
	}
}

func TestAppendReadRoundTripBF16(t *testing.T) {
	ctx := newCPUContext(t)
	const kvHeads, headDim, tokens = 1, 128, 19
	cache := newCache(t, ctx, kvHeads, headDim, 16, 64, DTypeBF16)
	seq := must(cache.AddSequence())(t)
	rng := rand.New(rand.NewSource(2))
	n := tokens * kvHeads * headDim
	kBits, vBits := make([]uint16, n), make([]uint16, n)
	for i := range kBits {
		kBits[i] = bf16Bits(float32(rng.NormFloat64()))
		vBits[i] = bf16Bits(float32(rng.NormFloat64()))
	}
	if err := cache.AppendBits(seq, 0, DTypeBF16, kBits, vBits); err != nil {
		t.Fatal(err)
	}
	kOut, vOut := make([]uint16, n), make([]uint16, n)
	if err := cache.ReadBits(seq, 0, 0, DTypeBF16, kOut, vOut); err != nil {
		t.Fatal(err)
	}
	for i := range kBits {
		if kOut[i] != kBits[i] || vOut[i] != vBits[i] {
			t.Fatalf("element %d: read (%#04x, %#04x), appended (%#04x, %#04x)", i, kOut[i], vOut[i], kBits[i], vBits[i])
		}
	}
	// f32 appended into a bf16 cache rounds to nearest even; read back as f32 it is exact.
	k32 := workload.Gaussian(rng, n)
	if err := cache.AppendF32(seq, 0, k32, k32); err != nil {
		t.Fatal(err)
	}
	kRead := make([]float32, n)
	if err := cache.ReadF32(seq, 0, tokens, kRead, nil); err != nil {
		t.Fatal(err)
	}
	for i := range k32 {
		want := math.Float32frombits(uint32(bf16Bits(k32[i])) << 16)
		if kRead[i] != want {
			t.Fatalf("element %d: %g read back as %g, want %g", i, k32[i], kRead[i], want)
		}
	}
}

// bf16Bits rounds a finite f32 to bf16, to nearest even.
func bf16Bits(x float32) uint16 {
	bits := math.Float32bits(x)
	return uint16((bits + 0x7fff + (bits>>16)&1) >> 16)
}
