// sr_merge_attention_states on the GPU: a block per row (batch entry, q-head). Thread 0 walks
// the states in order with the shared merge arithmetic (softmax_state.h, StateMerge) and leaves
// each state's rescale factor and weight in shared memory; every thread then merges its
// elements as the CPU does (acc = acc * factor_i + weight_i * x_i, states in order).
#pragma once

#include <math.h>

#include "shared_arithmetic/softmax_state.h"
#include "compat.h"
#include "element_access.cuh"

namespace sr::gpu {

constexpr int kMergeThreads = 128;
constexpr int kMaxMergeStates = 64;

struct MergeParams {
  const void* outs[kMaxMergeStates];
  const float* lses[kMaxMergeStates];
  const float* bounds[kMaxMergeStates];  // all nullptr without state bounds; a nullptr: exact
  int32_t num_states;
  int32_t head_dim;
  int32_t state_dtype;
  int32_t out_dtype;
  void* out;
  float* lse;    // optional
  float* bound;  // optional
};

// Sum over the block's threads; every thread gets it.
__device__ __forceinline__ float merge_block_sum(float v, float* scratch) {
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by the previous sum
  if (threadIdx.x % kWarp == 0) scratch[threadIdx.x / kWarp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < kMergeThreads / kWarp; ++w) total += scratch[w];
  return total;
}

__global__ void __launch_bounds__(kMergeThreads) merge_states_kernel(MergeParams p) {
  __shared__ float factor[kMaxMergeStates], weight[kMaxMergeStates];
  __shared__ float scratch[kMergeThreads / kWarp];
  __shared__ float merged_s, merged_lse;
  const int64_t r = blockIdx.x;
  const int32_t D = p.head_dim;
  if (threadIdx.x == 0) {
    StateMerge merge;
    for (int i = 0; i < p.num_states; ++i) factor[i] = state_merge_add(merge, p.lses[i][r], &weight[i]);
    merged_s = merge.s;
    merged_lse = merge.s > 0.f ? state_merge_lse(merge) : -INFINITY;
  }
  __syncthreads();
  // The merged bound first, while every state's output is as given (out may be one of them):
  // each state's absolute bound from its relative one and its output's norm, summed with the
  // same factors and weights (docs/ARCHITECTURE.md 4.7).
  float abs_bound = 0.f;
  for (int i = 0; i < p.num_states && p.bound; ++i) {
    float state_abs = 0.f;
    if (p.bounds[i]) {
      float partial = 0.f;
      for (int32_t d = threadIdx.x; d < D; d += kMergeThreads) {
        const float x = load_any(p.outs[i], r * D + d, p.state_dtype);
        partial += x * x;
      }
      state_abs = absolute_from_relative_bound(p.bounds[i][r], sqrtf(merge_block_sum(partial, scratch)));
    }
    abs_bound = abs_bound * factor[i] + (weight[i] > 0.f ? weight[i] * state_abs : 0.f);
  }
  __syncthreads();  // every thread has read the states' rows for the norms
  // A thread reads its elements of every state before writing the merged element.
  const float inv_s = merged_s > 0.f ? 1.f / merged_s : 0.f;
  float norm2 = 0.f;
  for (int32_t d = threadIdx.x; d < D; d += kMergeThreads) {
    float acc = 0.f;
    for (int i = 0; i < p.num_states; ++i) acc = acc * factor[i] + weight[i] * load_any(p.outs[i], r * D + d, p.state_dtype);
    const float value = acc * inv_s;
    norm2 += value * value;
    store_any(p.out, r * D + d, p.out_dtype, value);
  }
  if (!p.bound && !p.lse) return;
  const float out_norm = sqrtf(merge_block_sum(norm2, scratch));
  if (threadIdx.x == 0) {
    if (p.lse) p.lse[r] = merged_lse;
    if (p.bound) p.bound[r] = certified_relative_bound(abs_bound * inv_s, out_norm);
  }
}

}  // namespace sr::gpu
