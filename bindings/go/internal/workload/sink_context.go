// Package workload makes K/V contexts and queries for the tests and the demo, and computes
// attention in float64 as the reference.
package workload

import (
	"math"
	"math/rand"
)

// SinkContext is a sink-structured context: for each kv-head a unit direction u; every q-head
// of the head's group queries sqrt(head_dim) * u (+ small noise), so with scale 1/sqrt(head_dim)
// a key a*u scores a logit of about a. Token 0 is the sink (logit 0, the largest, with a small
// value), the last 64 tokens score about -5, and every other token scores
// -15 + 3*min(N(0,1), 1.5): far below the anchors, which is what routing skips.
type SinkContext struct {
	KVHeads, Group, HeadDim, Tokens int
	K, V                            []float32 // [Tokens][KVHeads][HeadDim]
	Q                               []float32 // [KVHeads*Group][HeadDim]
}

const windowTokens = 64

// NewSinkContext generates a context from a seed.
func NewSinkContext(kvHeads, group, headDim, tokens int, seed int64) *SinkContext {
	rng := rand.New(rand.NewSource(seed))
	c := &SinkContext{KVHeads: kvHeads, Group: group, HeadDim: headDim, Tokens: tokens,
		K: make([]float32, tokens*kvHeads*headDim), V: make([]float32, tokens*kvHeads*headDim),
		Q: make([]float32, kvHeads*group*headDim)}
	D := headDim
	keyNoise := 0.35 / math.Sqrt(float64(D))
	for h := 0; h < kvHeads; h++ {
		u := unitVector(rng, D)
		for g := 0; g < group; g++ {
			q := c.Q[(h*group+g)*D:][:D]
			for d := range q {
				q[d] = float32(math.Sqrt(float64(D))*u[d] + 0.05*rng.NormFloat64())
			}
		}
		for t := 0; t < tokens; t++ {
			k := c.K[(t*kvHeads+h)*D:][:D]
			v := c.V[(t*kvHeads+h)*D:][:D]
			switch {
			case t == 0:
				for d := range k {
					k[d] = 0
					v[d] = float32(0.05 * rng.NormFloat64())
				}
				continue
			case t >= tokens-windowTokens:
				logit := -5 + 0.5*rng.NormFloat64()
				for d := range k {
					k[d] = float32(logit * u[d])
				}
			default:
				logit := -15 + 3*math.Min(rng.NormFloat64(), 1.5)
				for d := range k {
					k[d] = float32(logit*u[d] + keyNoise*rng.NormFloat64())
				}
			}
			for d := range v {
				v[d] = float32(rng.NormFloat64())
			}
		}
	}
	return c
}

func unitVector(rng *rand.Rand, n int) []float64 {
	u := make([]float64, n)
	norm := 0.0
	for i := range u {
		u[i] = rng.NormFloat64()
		norm += u[i] * u[i]
	}
	norm = math.Sqrt(norm)
	for i := range u {
		u[i] /= norm
	}
	return u
}

// Gaussian fills a new slice of n standard normal values.
func Gaussian(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}
