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

// ---------------------------------------------------------------- attention variants

// The tokens a step attends to in a sequence of `length` tokens: [0, kept_end) and
// [window_begin, length), kept_end <= window_begin. Every token without a sliding window
// (window_left < 0); else the last window_left + 1 and the first window_sink_tokens.
struct VisibleTokens {
  int64_t kept_end;
  int64_t window_begin;
};

SR_HD VisibleTokens visible_tokens(int64_t length, int32_t window_left, int32_t window_sink_tokens) {
  if (window_left < 0) return VisibleTokens{0, 0};
  int64_t window_begin = length - 1 - window_left;
  if (window_begin < 0) window_begin = 0;
  const int64_t kept_end = window_sink_tokens < window_begin ? window_sink_tokens : window_begin;
  return VisibleTokens{kept_end, window_begin};
}

// How many tokens a step attends to in a sequence of `length` tokens.
SR_HD int64_t attended_tokens(const VisibleTokens& v, int64_t length) { return v.kept_end + (length - v.window_begin); }

// The attended tokens laid out as one run of whole pages, for kernels that cut splits and tiles
// on page boundaries (the GPU's): the kept range's pages, then the window's from the start of
// its first page. A run token u sits at sequence token u below gap_from and at u + gap from it
// (gap is whole pages; -page_tokens when the kept range ends in the window's first page, which
// the run then holds twice). Rows [masked_begin, masked_end) of the run are not attended: a
// suffix of the kept range's last page and a prefix of the window's first page, so every page
// of the run holds an attended row, and a tile within a page is masked at one end only.
// Without a window the run is the sequence.
struct AttendedRun {
  int64_t length;
  int64_t gap_from;
  int64_t gap;
  int64_t masked_begin, masked_end;
};

SR_HD AttendedRun attended_run(int64_t length, const VisibleTokens& v, int64_t page_tokens) {
  const int64_t gap_from = (v.kept_end + page_tokens - 1) / page_tokens * page_tokens;
  const int64_t gap = v.window_begin / page_tokens * page_tokens - gap_from;
  return AttendedRun{length - gap, gap_from, gap, v.kept_end, v.window_begin - gap};
}

// The attended tokens in the run's coordinates (for anchor_set).
SR_HD VisibleTokens run_visible(const AttendedRun& run, const VisibleTokens& v) {
  return VisibleTokens{v.kept_end, v.window_begin - run.gap};
}

// Logit soft-capping (Gemma 2): cap * tanh(s / cap), monotone, so a block's largest capped
// logit is the cap of its largest logit; cap 0 = none.
SR_HD float soft_cap(float s, float cap) { return cap > 0.f ? cap * tanhf(s / cap) : s; }

// A learned sink logit as a partial state: one token of weight exp(sink - m) and no value. It
// merges with a head's total like any split (merge_scales, merge_partials; its output is 0).
SR_HD SoftmaxPartial sink_partial(float sink_logit) {
  return sink_logit == -INFINITY ? empty_partial() : SoftmaxPartial{sink_logit, 1.f, 0.f, 0.f};
}

// The natural log of a head's whole softmax denominator from its merged state.
SR_HD float partial_lse(const SoftmaxPartial& p) { return p.m + logf(p.l); }

// ---------------------------------------------------------------- anchor set

// The first sink_tokens and the last window_tokens tokens a step attends to (VisibleTokens).
// Their blocks are always read in full, and their largest logit is the reference m_ref: the
// global maximum is at least m_ref, so a logit below m_ref - tau has weight below exp(-tau).
// A learned sink logit joins m_ref as one more anchor logit.
struct AnchorSet {
  int64_t sink_begin;    // tokens [sink_begin, sink_end) are the first attended tokens
  int64_t sink_end;
  int64_t window_begin;  // tokens [window_begin, length) are the recent window
};

SR_HD AnchorSet anchor_set(int64_t length, int32_t sink_tokens, int32_t window_tokens,
                           VisibleTokens visible = VisibleTokens{0, 0}) {
  // The first attended tokens are those of the kept range, or, with none kept, of the window.
  const int64_t sink_begin = visible.kept_end > 0 ? 0 : visible.window_begin;
  const int64_t first_range_end = visible.kept_end > 0 ? visible.kept_end : length;
  int64_t sink_end = sink_begin + sink_tokens;
  if (sink_end > first_range_end) sink_end = first_range_end;
  int64_t window_begin = length - window_tokens;
  if (window_begin < visible.window_begin) window_begin = visible.window_begin;
  if (window_begin < sink_end) window_begin = sink_end;
  return AnchorSet{sink_begin, sink_end, window_begin};
}

// Whether tokens [begin, end) hold any anchor token.
SR_HD bool range_touches_anchor(int64_t begin, int64_t end, const AnchorSet& a) {
  return (begin < a.sink_end && end > a.sink_begin) || end > a.window_begin;
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

// The absolute bound behind a reported relative one: eps = A / (N - A) with N = ||o'|| gives
// A = eps N / (1 + eps). +inf (or NaN) stays +inf: nothing is known.
SR_HD float absolute_from_relative_bound(float eps, float out_norm) {
  if (eps == 0.f) return 0.f;
  if (!(eps < INFINITY)) return INFINITY;
  return eps * out_norm / (1.f + eps);
}

// ---------------------------------------------------------------- merging attention states

// Outputs o_i over disjoint key sets with denominators exp(lse_i) merge into
// o = sum_i c_i o_i, c_i = exp(lse_i - lse), lse = log sum_i exp(lse_i). Their errors add with
// the same weights, so the merged absolute bound is sum_i c_i A_i (docs/ARCHITECTURE.md,
// "Merging attention states"). Fed one state at a time; m = -inf while empty.
struct StateMerge {
  float m = -INFINITY;  // largest lse so far
  float s = 0.f;        // sum of exp(lse_i - m)
};

// Adds a state with log-denominator `lse`; returns the factor the sums so far (outputs and
// absolute bounds included) are multiplied by, and writes the new state's own weight.
SR_HD float state_merge_add(StateMerge& merge, float lse, float* weight) {
  if (lse == -INFINITY) {  // an empty state adds nothing
    *weight = 0.f;
    return 1.f;
  }
  const float m = merge.m > lse ? merge.m : lse;
  const float old_factor = rescale(merge.m, m);
  *weight = expf(lse - m);
  merge.s = merge.s * old_factor + *weight;
  merge.m = m;
  return old_factor;
}

// The merged lse; outputs and bounds summed with state_merge_add's weights are divided by s.
SR_HD float state_merge_lse(const StateMerge& merge) { return merge.m + logf(merge.s); }

}  // namespace sr
