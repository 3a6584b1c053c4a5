// The routing arithmetic, written once for the CPU backend and the GPU kernels: the partial
// softmax state of one q-head, its merge across warps or splits, the anchor set, the skip
// rules and the certified error bound (docs/ARCHITECTURE.md, "Routing arithmetic and the
// certified bound").
#pragma once

#include <math.h>
#include <stdint.h>

#include "shared_arithmetic/host_device.h"

namespace sr {

// Partial softmax state of one q-head over a set of tokens, in the frame of its largest logit
// m. Skipped tokens stay in l, so the skipped mass is exact, not estimated.
struct SoftmaxPartial {
  float m;            // largest logit seen; -inf when nothing was scored
  float l;            // sum of exp(s - m) over every scored token, kept or skipped
  float skipped_l;    // the part of l whose V rows were not read
  float skipped_err;  // sum over skipped blocks of (their part of l) * (largest V-row norm there)
};

SR_HD SoftmaxPartial empty_partial() { return SoftmaxPartial{-INFINITY, 0.f, 0.f, 0.f}; }

// exp(m_old - m_new), with an empty state (m_old = -inf) contributing nothing.
SR_HD float rescale(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.f : expf(m_old - m_new);
}

// Factors that bring two partials (and their unnormalised outputs) to a common maximum.
struct MergeScales {
  float m;  // the common maximum
  float a;  // multiply the first partial's l, skipped_*, and o by this
  float b;  // and the second's by this
};

SR_HD MergeScales merge_scales(float m_a, float m_b) {
  float m = m_a > m_b ? m_a : m_b;
  return MergeScales{m, rescale(m_a, m), rescale(m_b, m)};
}

SR_HD SoftmaxPartial merge_partials(const SoftmaxPartial& a, const SoftmaxPartial& b,
                                    const MergeScales& s) {
  return SoftmaxPartial{s.m, a.l * s.a + b.l * s.b, a.skipped_l * s.a + b.skipped_l * s.b,
                        a.skipped_err * s.a + b.skipped_err * s.b};
}

// ---------------------------------------------------------------- anchor set

// The first sink_tokens and the last window_tokens positions of a sequence of `length` tokens.
// Their blocks are always read in full, and their largest logit is the reference m_ref: the
// global maximum is at least m_ref, so a logit below m_ref - tau has weight below exp(-tau).
struct AnchorSet {
  int64_t sink_end;      // tokens [0, sink_end) are sinks
  int64_t window_begin;  // tokens [window_begin, length) are the recent window
};

SR_HD AnchorSet anchor_set(int64_t length, int32_t sink_tokens, int32_t window_tokens) {
  int64_t sink_end = sink_tokens < length ? sink_tokens : length;
  int64_t window_begin = length - window_tokens;
  if (window_begin < sink_end) window_begin = sink_end;
  return AnchorSet{sink_end, window_begin};
}

// Whether tokens [begin, end) hold any anchor token.
SR_HD bool range_touches_anchor(int64_t begin, int64_t end, const AnchorSet& a) {
  return begin < a.sink_end || end > a.window_begin;
}

// ---------------------------------------------------------------- skip rules

// Tau mode: a block whose largest logit (for every q-head that reads it) sits more than tau
// below the reference contributes less than exp(-tau) per token relative to the top token.
SR_HD bool tau_skips(float block_max, float reference, float tau) {
  return block_max < reference - tau;
}

// Budget mode's order: the candidate blocks (none of them anchors) are skipped smallest key
// first. A block's key is its largest logit over the q-heads that read it, each relative to its
// head's reference: block_max[h * head_stride] is head h's largest logit in the block.
SR_HD float budget_order_key(const float* block_max, int64_t head_stride, const float* m_ref, int heads) {
  float key = -INFINITY;
  for (int h = 0; h < heads; ++h) key = fmaxf(key, block_max[h * head_stride] - m_ref[h]);
  return key;
}

// Budget mode keeps a margin because the local test uses an estimate of ||o||.
constexpr float kBudgetSafety = 0.75f;

// Budget mode, decided inside one split with no knowledge of the others: the split may skip
// blocks while sum over them of (sum_t exp(s_t - m_ref)) * vmax_block stays within this
// allowance. The global normalizer is at least z_anchor (the anchor tokens' sum in the same
// frame), so the split's absolute error stays under share * safety * budget/(1+budget) *
// ||o_anchor||; with ||o_anchor|| close to ||o||, the final relative bound stays in budget.
SR_HD float budget_allowance(float budget, float anchor_out_norm, float z_anchor, float share) {
  return kBudgetSafety * (budget / (1.f + budget)) * anchor_out_norm * z_anchor * share;
}

// ---------------------------------------------------------------- certified bound

// A V row's norm as a page summary holds it (docs/ARCHITECTURE.md, "Per-page summaries"): from
// the sum of squares in double, rounded up so the bound built on it stays an upper bound. A row
// holding NaN or Inf counts as infinitely large: skipping it could hide what the dense result
// holds (NaN), so no bound that skips it may be finite.
SR_HD float summary_row_norm(double sum_squares) {
  const double norm = sqrt(sum_squares) * (1.0 + 1e-6);
  return norm == norm ? static_cast<float>(norm) : INFINITY;  // above FLT_MAX the cast gives +inf
}

// ||o - o'|| <= sum over skipped blocks of P_block * vmax_block = skipped_err / l (absolute).
// Relative to the exact output: ||o|| >= ||o'|| - abs_bound, so
// ||o - o'|| / ||o|| <= abs_bound / (||o'|| - abs_bound), infinite when that is not positive.
SR_HD float certified_relative_bound(float abs_bound, float out_norm) {
  if (abs_bound <= 0.f) return 0.f;
  float denominator = out_norm - abs_bound;
  return denominator > 0.f ? abs_bound / denominator : INFINITY;
}

}  // namespace sr
