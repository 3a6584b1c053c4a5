// Adaptive splits: one routed sequence's kv-heads differ in how much of V they read, so a launch
// may share its blocks among the groups in proportion to what each read in the sequence's last
// routed step (src/shared_arithmetic/split_plan.h). Each block finds its place from the weights;
// the launch's last merge publishes the new ones.
#pragma once

#include "block_base.cuh"
#include "shared_arithmetic/split_plan.h"

namespace sr::gpu {

// An adaptive launch (DecodeParams::adaptive_splits): block `flat` of the launch's groups x
// p.splits, numbered group-major, finds its group (head tile), its split there and the group's
// split count from the split weights of the sequence's last routed step (src/shared_arithmetic/split_plan.h).
// Every block reads the same weights (the last step's merge published them), so the blocks agree.
inline __device__ void plan_adaptive_split(const DecodeParams& p, SharedState& sh, const uint16_t* stored_weights,
                                    int64_t flat, int32_t groups) {
  int32_t* weight = reinterpret_cast<int32_t*>(&sh.w[0][0]);  // scratch: no logits yet
  for (int g = threadIdx.x; g < groups; g += kThreads) {
    const uint32_t w = stored_weights[g / p.tiles];
    weight[g] = w == 0 ? static_cast<int32_t>(kMinSplitWeight) : static_cast<int32_t>(w);  // 0: no routed step yet
  }
  __syncthreads();
  const int64_t blocks = static_cast<int64_t>(groups) * p.splits;
  for (int g = threadIdx.x; g < groups; g += kThreads) {
    int64_t before = 0, total = 0;
    for (int i = 0; i < groups; ++i) {
      total += weight[i];
      if (i < g) before += weight[i];
    }
    const int64_t first = planned_group_start(g, groups, blocks, before, total);
    const int64_t next = planned_group_start(g + 1, groups, blocks, before + weight[g], total);
    if (flat >= first && flat < next) {
      sh.block_tile = g;
      sh.block_split = static_cast<int32_t>(flat - first);
      sh.group_splits = static_cast<int32_t>(next - first);
      sh.group_first_slot = first;
    }
  }
  __syncthreads();
}

// The last group of an adaptive launch (one sequence) to merge publishes every kv-head's split
// weight, the largest of its tiles'. No block of the launch reads the weights any more: every
// block arrived at its merge after planning its split. Out of line: inlined, the 4-blocks build
// spilled more in its passes.
static __device__ __noinline__ void publish_split_weights(const DecodeParams& p) {
  __threadfence();
  const DeviceTables* t = p.tables;
  uint16_t* weights = t->split_weight_row(p.slots[0], p.layer, p.kv_heads);
  const volatile uint32_t* next = p.next_weight;
  for (int h = threadIdx.x; h < p.kv_heads; h += kThreads) {
    uint32_t w = 0;
    for (int i = 0; i < p.tiles; ++i) {
      const uint32_t tile_weight = next[h * p.tiles + i];
      w = tile_weight > w ? tile_weight : w;
    }
    weights[h] = static_cast<uint16_t>(w);
  }
  if (threadIdx.x == 0) *p.groups_merged = 0;
}

}  // namespace sr::gpu
