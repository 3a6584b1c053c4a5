package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import "unsafe"

// DecodeStats sums the decode steps run with CollectStats since the last ResetStats.
type DecodeStats struct {
	Steps           int64   // decode steps counted
	Heads           int64   // (sequence, q-head) pairs computed
	BlocksTotal     int64   // (sequence, kv-head, page) blocks scored
	BlocksVSkipped  int64   // of those, blocks whose V was not read
	HeadsRecomputed int64   // q-heads recomputed exactly because their bound passed the budget
	MaxSkippedMass  float64 // largest skipped softmax mass of any (sequence, q-head)
	MaxErrorBound   float64 // largest certified relative error bound of any (sequence, q-head)
	StepsRunDense   int64   // routed steps run dense: shorter than DecodeOptions.RouteFromTokens
}

// SkipFraction is BlocksVSkipped / BlocksTotal, 0 when nothing was scored.
func (s DecodeStats) SkipFraction() float64 {
	if s.BlocksTotal == 0 {
		return 0
	}
	return float64(s.BlocksVSkipped) / float64(s.BlocksTotal)
}

// Stats reads the context's decode statistics.
func (c *Context) Stats() (DecodeStats, error) {
	ptr, err := c.acquire("Context.Stats")
	if err != nil {
		return DecodeStats{}, err
	}
	defer c.mu.RUnlock()
	var s C.sr_decode_stats
	err = call("sr_context_stats", func() C.sr_status {
		return C.sr_context_stats(ptr, &s, C.size_t(unsafe.Sizeof(s)))
	})
	if err != nil {
		return DecodeStats{}, err
	}
	return DecodeStats{
		Steps:           int64(s.steps),
		Heads:           int64(s.heads),
		BlocksTotal:     int64(s.blocks_total),
		BlocksVSkipped:  int64(s.blocks_v_skipped),
		HeadsRecomputed: int64(s.heads_recomputed),
		MaxSkippedMass:  float64(s.max_skipped_mass),
		MaxErrorBound:   float64(s.max_error_bound),
		StepsRunDense:   int64(s.steps_run_dense),
	}, nil
}

// ResetStats zeroes the context's decode statistics.
func (c *Context) ResetStats() error {
	ptr, err := c.acquire("Context.ResetStats")
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	return call("sr_context_reset_stats", func() C.sr_status { return C.sr_context_reset_stats(ptr) })
}
