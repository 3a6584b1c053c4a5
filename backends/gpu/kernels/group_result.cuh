// A merged group's results: each head's skipped mass and certified bound (docs/ARCHITECTURE.md,
// "The certified bound"), the flag that sends a group over its error budget to the exact
// follow-up launch, the step's statistics, and an adaptive launch's split weights.
#pragma once

#include "adaptive_splits.cuh"
#include "split_merge.cuh"

namespace sr::gpu {

// A split's share of the step's statistics (the first launch only: a follow-up recomputes).
__device__ __forceinline__ void count_split(const DecodeParams& p, const SharedState& sh, int32_t tile) {
  if (threadIdx.x == 0 && p.stats && tile == 0 && !p.follow_up) {
    atomicAdd(&p.stats->blocks_total, static_cast<unsigned long long>(sh.blocks));
    atomicAdd(&p.stats->blocks_v_skipped, static_cast<unsigned long long>(sh.skipped));
  }
  if (threadIdx.x == 0 && p.stats && !p.follow_up && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) {
    if (p.batch_offset == 0) atomicAdd(&p.stats->steps, 1ull);
    if (p.batch_offset == 0 && p.run_dense) atomicAdd(&p.stats->steps_run_dense, 1ull);
    atomicAdd(&p.stats->heads, static_cast<unsigned long long>(p.batch) * p.num_q_heads);
  }
}

// After merge_splits: the heads' mass and bound, the budget flag, the workspace reset for the
// next step, statistics, and (the last group of an adaptive launch) the split weights.
template <int D, int GT>
__device__ __forceinline__ void finish_group(const DecodeParams& p, SharedState& sh, const float* reduce,
                                             const SplitGroup& g, int routing, unsigned head_tiles, int lane) {
  __syncthreads();
  for (int h = warp_id(); h < g.valid_heads; h += kWarps) {
    float n2 = 0.f;
    for (int d = lane; d < D; d += kWarp) n2 += reduce[h * D + d] * reduce[h * D + d];
    n2 = warp_sum(n2);
    if (lane == 0) {
      float inv_l = 1.f / sh.l[h];
      float mass = sh.skipped_l[h] * inv_l;
      float bound = certified_relative_bound(sh.skipped_err[h] * inv_l, sqrtf(n2));
      int64_t head = g.b * p.num_q_heads + static_cast<int64_t>(g.kv_head) * p.group + g.tile * GT + h;
      if (p.head_skipped_mass) p.head_skipped_mass[head] = mass;
      if (p.head_error_bound) p.head_error_bound[head] = bound;
      sh.head_mass[h] = mass;  // for the statistics below
      sh.head_bound[h] = bound;
      if (!p.follow_up && p.enforce_budget && !(bound <= p.budget)) atomicOr(&sh.over, 1);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    p.arrivals[g.slot] = 0;
    sh.publishes = 0;
    if (p.follow_up) {
      p.redo[g.slot] = 0;
      if (p.stats) {
        atomicAdd(&p.stats->heads_recomputed, static_cast<unsigned long long>(g.valid_heads));
        // The first pass's skips of this group were undone by the exact recompute.
        if (g.tile == 0) atomicAdd(&p.stats->blocks_v_skipped, static_cast<unsigned long long>(-static_cast<long long>(p.group_skipped[g.slot])));
      }
    } else {
      if (sh.over) p.redo[g.slot] = 1;
      if (routing != SR_ROUTING_OFF) {
        const unsigned long long tally = atomicExch(&p.group_tally[g.slot], 0ull);
        const uint32_t blocks = static_cast<uint32_t>(tally >> 32), skipped = static_cast<uint32_t>(tally);
        p.group_skipped[g.slot] = skipped;
        if (p.adaptive_splits) {
          p.next_weight[g.slot] = split_weight(blocks, skipped);
          __threadfence();
          sh.publishes = atomicAdd(p.groups_merged, 1u) == head_tiles - 1;
        }
      }
    }
  }
  SR_TRACE(p, kTraceMergeEnd);
  // Statistics hold each head's final result: a group the follow-up recomputes reports there.
  if (p.stats && threadIdx.x < g.valid_heads && (p.follow_up || !sh.over)) {
    atomic_max_nonneg(&p.stats->max_skipped_mass_bits, sh.head_mass[threadIdx.x]);
    atomic_max_nonneg(&p.stats->max_error_bound_bits, sh.head_bound[threadIdx.x]);
  }
  // The last group of an adaptive launch to merge publishes every kv-head's split weight for the
  // sequence's next routed step.
  if (p.adaptive_splits) {
    __syncthreads();
    if (sh.publishes) publish_split_weights(p);
  }
}

}  // namespace sr::gpu
