package workload

import "math"

// Attention is float64 softmax attention of one query token: q [numQHeads][D] against
// k, v [tokens][kvHeads][D], q-head h reading kv-head h / (numQHeads / kvHeads). Returns
// [numQHeads][D].
func Attention(q, k, v []float32, numQHeads, kvHeads, headDim, tokens int, scale float64) []float64 {
	D := headDim
	group := numQHeads / kvHeads
	out := make([]float64, numQHeads*D)
	logits := make([]float64, tokens)
	for h := 0; h < numQHeads; h++ {
		kvh := h / group
		qh := q[h*D:][:D]
		maxLogit := math.Inf(-1)
		for t := 0; t < tokens; t++ {
			kt := k[(t*kvHeads+kvh)*D:][:D]
			dot := 0.0
			for d := 0; d < D; d++ {
				dot += float64(qh[d]) * float64(kt[d])
			}
			logits[t] = dot * scale
			maxLogit = math.Max(maxLogit, logits[t])
		}
		sum := 0.0
		oh := out[h*D:][:D]
		for t := 0; t < tokens; t++ {
			p := math.Exp(logits[t] - maxLogit)
			sum += p
			vt := v[(t*kvHeads+kvh)*D:][:D]
			for d := 0; d < D; d++ {
				oh[d] += p * float64(vt[d])
			}
		}
		for d := range oh {
			oh[d] /= sum
		}
	}
	return out
}

// RelativeError is ||got - want|| / ||want||.
func RelativeError[T float32 | float64](got []float32, want []T) float64 {
	diff, norm := 0.0, 0.0
	for i := range got {
		e := float64(got[i]) - float64(want[i])
		diff += e * e
		norm += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(diff / norm)
}
