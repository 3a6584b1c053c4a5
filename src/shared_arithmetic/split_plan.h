// How long each split of a Split-K decode is: enough work items to keep every worker (CPU
// thread or GPU SM) busy, none shorter than is worth its fixed cost. Host code of every backend,
// and the GPU kernels' cut of a sequence into splits.
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace sr {

struct SplitLimits {
  int64_t target_items;  // work items wanted over the batch (e.g. 4 x workers)
  int64_t min_tokens;    // shortest useful split
  int64_t max_tokens;    // longest split the backend's scratch holds
};

// Tokens per split, a multiple of page_tokens, for sequences of the given lengths.
inline int64_t plan_split_tokens(const int64_t* lengths, int32_t batch, int32_t kv_heads,
                                 int32_t page_tokens, const SplitLimits& limits) {
  int64_t total = 0;
  for (int32_t b = 0; b < batch; ++b) total += lengths[b];
  int64_t per_item = (total * kv_heads + limits.target_items - 1) / limits.target_items;
  if (per_item < limits.min_tokens) per_item = limits.min_tokens;
  if (per_item > limits.max_tokens) per_item = limits.max_tokens;
  int64_t pages = (per_item + page_tokens - 1) / page_tokens;
  return (pages < 1 ? 1 : pages) * page_tokens;
}

inline int64_t split_count(int64_t length, int64_t split_tokens) {
  return (length + split_tokens - 1) / split_tokens;
}

// Tokens in each split when a sequence of `length` tokens is cut into `splits` page-aligned
// pieces none shorter than min_tokens (a GPU kernel's cut, read on the device; its host's, to
// launch no empty split).
SR_HD int64_t tokens_per_split(int64_t length, int64_t splits, int64_t min_tokens, int64_t page_tokens) {
  int64_t per_split = (length + splits - 1) / splits;
  if (per_split < min_tokens) per_split = min_tokens;
  return (per_split + page_tokens - 1) / page_tokens * page_tokens;
}

// ---------------------------------------------------------------- one routed sequence
// Its kv-heads differ in how much of V they read (a sink head skips nearly all of it, a diffuse
// one none), so equal splits leave the chip waiting on the heads that read V. Each step records
// a weight per (sequence, layer, kv-head) from the bytes it read, and the next step of that
// sequence gives each group of blocks a share of the launch's blocks in proportion (GPU
// backend). Bytes, not time: the same calls give the same plans, so the same bits, every run.

// Weight of a group that read K in full and `blocks - skipped` of `blocks` V blocks: the bytes
// read, in units where K alone is kMinSplitWeight (so weights lie in [kMinSplitWeight,
// kMaxSplitWeight]).
constexpr uint32_t kMinSplitWeight = 256;
constexpr uint32_t kMaxSplitWeight = 2 * kMinSplitWeight;
SR_HD uint32_t split_weight(uint32_t blocks, uint32_t skipped) {
  if (blocks == 0 || skipped > blocks) return kMinSplitWeight;
  const uint64_t kept = blocks - skipped;
  return kMinSplitWeight + static_cast<uint32_t>((kMinSplitWeight * kept + blocks / 2) / blocks);
}

// First block of group `group` when `blocks` blocks are shared by `groups` groups: one each,
// and the other blocks - groups in proportion to the weights (weight_before: the weights of the
// groups before this one; weight_total: all of them). Cutting at cumulative weights makes the
// counts sum to `blocks` exactly; equal weights give every group blocks / groups.
SR_HD int64_t planned_group_start(int64_t group, int64_t groups, int64_t blocks, int64_t weight_before,
                                  int64_t weight_total) {
  return group + (blocks - groups) * weight_before / weight_total;
}

// The most blocks planned_group_start gives one group with weights in [kMinSplitWeight,
// kMaxSplitWeight]: 1 + (blocks - groups) * w / W + 1 with w / W <= r / (r + groups - 1), r the
// ratio of the two.
SR_HD int64_t max_planned_splits(int64_t groups, int64_t blocks) {
  constexpr int64_t r = kMaxSplitWeight / kMinSplitWeight;
  return 2 + (blocks - groups) * r / (groups + r - 1);
}

}  // namespace sr
