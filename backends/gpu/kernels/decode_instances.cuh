// Explicit instantiations of the decode kernel for one cache dtype (one file per dtype, so the
// builds compile in parallel): every build launch planning can choose (launch_plan.h), found by
// its KernelBuild in one lookup.
#pragma once

#include "decode_kernel.cuh"
#include "gpu_backend.h"
#include "launch_plan.h"

namespace sr::gpu {

// `programmatic`: the launch may overlap the previous kernel in the stream (the kernel waits
// for it before reading anything: wait_for_prior_grids).
template <int DT, int D, int GT, int kMinBlocks, bool kTauStream>
gpuError_t launch_decode(const DecodeParams& params, const LaunchBlocks& blocks, gpuStream_t stream, bool programmatic) {
  const dim3 grid = heads_fastest<kMinBlocks>() ? dim3(blocks.head_tiles, blocks.splits, blocks.batch)
                                                : dim3(blocks.splits, blocks.head_tiles, blocks.batch);
  return launch_kernel(decode_kernel<DT, D, GT, kMinBlocks, kTauStream>, grid, kThreads, stream, programmatic, params);
}

// Resident blocks per SM, asked of the runtime once per kernel.
template <int DT, int D, int GT, int kMinBlocks, bool kTauStream>
int32_t blocks_per_sm() {
  static const int32_t blocks = [] {
    int n = 0;
    if (occupancy_blocks_per_sm(&n, decode_kernel<DT, D, GT, kMinBlocks, kTauStream>, kThreads) != gpuSuccess) {
      (void)gpuGetLastError();  // clear it: the launch reports real errors
      n = 1;
    }
    return n > 0 ? n : 1;
  }();
  return blocks;
}

template <int DT, int D, int GT, int kMinBlocks>
DecodeKernel instance(bool tau_stream) {
  if constexpr (has_tau_stream(DT, SR_GPU_TENSOR_CORES)) {
    static_assert(BlockFor<DT, D, GT, kMinBlocks>::kStreamsTau, "launch_plan.h and the passes agree");
    if (tau_stream) {
      return DecodeKernel{launch_decode<DT, D, GT, kMinBlocks, true>, blocks_per_sm<DT, D, GT, kMinBlocks, true>};
    }
  }
  return DecodeKernel{launch_decode<DT, D, GT, kMinBlocks, false>, blocks_per_sm<DT, D, GT, kMinBlocks, false>};
}

// The builds of one head_dim: each tile's general build, and the occupancy build where there is one.
template <int DT, int D>
DecodeKernel instance_of_head_dim(const KernelBuild& b) {
  constexpr int32_t k1 = general_min_blocks(DT, D, 1, SR_GPU_TENSOR_CORES);
  constexpr int32_t k4 = general_min_blocks(DT, D, 4, SR_GPU_TENSOR_CORES);
  constexpr int32_t k8 = general_min_blocks(DT, D, 8, SR_GPU_TENSOR_CORES);
  if (b.tile_heads == 1 && b.min_blocks == k1) return instance<DT, D, 1, k1>(b.tau_stream);
  if (b.tile_heads == 4 && b.min_blocks == k4) return instance<DT, D, 4, k4>(b.tau_stream);
  if constexpr (has_occupancy_build(DT, D, 4)) {
    if (b.tile_heads == 4 && b.min_blocks == 4) return instance<DT, D, 4, 4>(b.tau_stream);
  }
  if (b.tile_heads == 8 && b.min_blocks == k8) return instance<DT, D, 8, k8>(b.tau_stream);
  return DecodeKernel{};
}

template <int DT>
DecodeKernel find_instance(const KernelBuild& b) {
  switch (b.head_dim) {
    case 64: return instance_of_head_dim<DT, 64>(b);
    case 128: return instance_of_head_dim<DT, 128>(b);
    case 256: return instance_of_head_dim<DT, 256>(b);
    default: return DecodeKernel{};
  }
}

}  // namespace sr::gpu
