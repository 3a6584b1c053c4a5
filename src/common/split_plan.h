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

}  // namespace sr
