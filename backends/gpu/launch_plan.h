// Launch planning for a decode step on the GPU, as pure host functions with no GPU runtime in
// them: which compiled kernel build runs, how many splits each (batch entry, kv-head, head tile)
// group gets, whether the splits follow the last step's reads. The backend calls it on every
// step (gpu_decode.cu); the CPU-only unit tests call it with a recorded device (H100) and pin
// its choices (tests/test_launch_plan.cpp). docs/ARCHITECTURE.md, "GPU backend: launch planning".
#pragma once

#include <cstdint>

#include "kernel_limits.h"
#include "shared_arithmetic/dtype_convert.h"
#include "sinkrouter/sinkrouter.h"
#include "tuning.h"

namespace sr::gpu {

// One compiled decode kernel: the decode_<dtype>.cu files instantiate exactly the builds that
// choose_build can return (decode_instances.cuh).
struct KernelBuild {
  int32_t head_dim;    // 64, 128 or 256
  int32_t tile_heads;  // q-heads scored together by one block: 1, 4 or 8
  int32_t min_blocks;  // blocks per SM its register allocation allows: 2, 3 or 4
  bool tau_stream;     // the build whose tau splits stream (tensor-core passes only)
};

// The passes a cache dtype's kernels run (routed_block.cuh): tensor cores for the 16-bit and
// FP8 caches on CUDA (FP8 codes widen exactly to f16 operands); CUDA (or vector) cores for f32
// caches, and for every cache on HIP.
constexpr bool tensor_core_passes(int32_t dtype, bool tensor_cores) {
  return tensor_cores && (dtype == SR_DTYPE_F16 || dtype == SR_DTYPE_BF16 || dtype == SR_DTYPE_FP8_E4M3);
}

// Blocks per SM of the general build of a tile: 3, except where the tensor-core passes of
// head_dim 256 keep q and 256 dims of accumulators in registers (they spill at 3, fit at 2); a
// tile of 8 heads always 2; and FP8's head_dim-64 tile of 4 on CUDA cores (HIP: those passes
// spill at 3 on sm_90, by a register, with the L2 row prefetch). The bf16 head_dim-128 tile of 4
// (the Llama-3.1-8B layer) is also built at 4 blocks per SM, for one routed sequence (more blocks
// hide more latency there).
constexpr int32_t general_min_blocks(int32_t dtype, int32_t head_dim, int32_t tile_heads, bool tensor_cores) {
  return tile_heads == 8                                              ? 2
         : tensor_core_passes(dtype, tensor_cores) && head_dim == 256 ? 2
         : !tensor_core_passes(dtype, tensor_cores) && dtype == SR_DTYPE_FP8_E4M3 && head_dim == 64 && tile_heads == 4 ? 2
                                                                       : 3;
}
constexpr bool has_occupancy_build(int32_t dtype, int32_t head_dim, int32_t tile_heads) {
  return dtype == SR_DTYPE_BF16 && head_dim == 128 && tile_heads == 4;
}
// Streamed tau splits exist in the tensor-core passes (16-bit and FP8 caches on CUDA).
constexpr bool has_tau_stream(int32_t dtype, bool tensor_cores) { return tensor_core_passes(dtype, tensor_cores); }

// Bytes of one token of one kv-head, K and V: its elements, and an FP8 row's f32 scale.
constexpr int64_t token_bytes(int32_t dtype, int32_t head_dim) {
  return 2 * (static_cast<int64_t>(head_dim) * static_cast<int64_t>(dtype_element_bytes(dtype)) +
              (dtype == SR_DTYPE_FP8_E4M3 ? static_cast<int64_t>(sizeof(float)) : 0));
}

// Q-heads one block scores: a GQA group of 1, else tiles of 4 or 8.
inline int32_t tile_heads_for(int32_t group) { return group <= 1 ? 1 : group <= 4 ? 4 : kMaxTileHeads; }

// The device as the planner sees it.
struct DeviceFacts {
  int32_t sm_count;
  bool tensor_cores;  // SR_GPU_TENSOR_CORES of the build
  // Resident blocks per SM of a build (the runtime's occupancy), and its context.
  int32_t (*blocks_per_sm)(const KernelBuild& build, int32_t dtype, void* context);
  void* context;
};

// One launch of a step: up to kLaunchBatch of its batch entries.
struct LaunchShape {
  int32_t dtype;                 // the cache's sr_dtype
  int32_t head_dim;
  int32_t group;                 // q-heads per kv-head
  int32_t kv_heads;
  int32_t page_tokens;
  int32_t batch;                 // entries in this launch
  int64_t longest;               // the longest of their sequences (tokens)
  sr_routing_mode routing;       // the step's effective mode (sr_step_routing::mode)
  int64_t split_capacity;        // (group, split) pairs the cache's workspace holds
};

struct LaunchPlan {
  KernelBuild build;
  int32_t tiles;             // head tiles per kv-head
  int32_t splits;            // blocks per group (an adaptive launch shares groups x splits)
  int32_t adaptive_splits;   // the groups' blocks follow the sequence's last routed step
  int32_t min_split_tokens;  // the shortest split the kernel cuts
  int32_t wave_blocks;       // blocks per SM the split count was chosen to fill
  unsigned grid_splits, grid_head_tiles, grid_batch;  // the launch's blocks
};

// The first launch of a step (routed or dense, as shape.routing says).
LaunchPlan plan_launch(const LaunchShape& shape, const DeviceFacts& device, const Tuning& tuning);

// The exact follow-up of a launch with an enforced budget: it splits as the dense step does (the
// same splits, so the same order of sums: a recomputed head holds the very bits of routing off),
// in the first launch's general build (the builds differ in loads in flight, not arithmetic).
LaunchPlan plan_follow_up(const LaunchShape& shape, const DeviceFacts& device, const Tuning& tuning);

// Splits per group: the count that finishes soonest when every block streams 1/splits of a
// group's tokens (token_bytes each) and pays a fixed cost, the chip runs `wave` blocks at once
// (whole waves), and the merge pays a little per split; the smallest count on ties.
int64_t pick_splits(int64_t groups, int64_t wave, int64_t max_splits, int64_t length, int64_t token_bytes);

}  // namespace sr::gpu
