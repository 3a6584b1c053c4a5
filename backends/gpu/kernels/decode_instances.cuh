// Explicit instantiations of the decode kernel for one cache dtype (one file per dtype, so
// the builds run in parallel): head_dim 64/128/256 x head tiles of 1, 4 and 8 q-heads.
#pragma once

#include "decode_kernel.cuh"
#include "gpu_backend.h"

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

template <int DT, int D, int GT, int kMinBlocks, bool kTauStream>
DecodeKernel build() {
  return DecodeKernel{launch_decode<DT, D, GT, kMinBlocks, kTauStream>, blocks_per_sm<DT, D, GT, kMinBlocks, kTauStream>};
}

// The tau-streaming build where it is asked for and the passes have one, else the general one.
template <int DT, int D, int GT, int kMinBlocks>
DecodeKernel kernel(bool tau_stream) {
  if constexpr (BlockFor<DT, D, GT, kMinBlocks>::kStreamsTau) {
    if (tau_stream) return build<DT, D, GT, kMinBlocks, true>();
  }
  return build<DT, D, GT, kMinBlocks, false>();
}

// SINKROUTER_CUDA_BLOCKS_PER_SM=3 or 4 forces one build of the shape built twice (0: choose).
inline int forced_blocks_per_sm() {
  static const int forced = [] {
    const int64_t v = tuning_knob("SINKROUTER_CUDA_BLOCKS_PER_SM", 0, 0);
    return v == 3 || v == 4 ? static_cast<int>(v) : 0;
  }();
  return forced;
}

// The bf16 head_dim-128 tile of 4 (the Llama-3.1-8B layer) is built twice. On the H100 (tensor-
// core passes), 4 resident blocks per SM are faster for one routed sequence (routed at 512K:
// 4-10%; more blocks hide more latency in the chunked passes); 3 blocks, with registers for a
// deeper pipeline, are faster for batches (12-15%) and for one dense sequence (at 2 blocks per
// SM up to 96K, every slot beyond: 1x32K 60.3 -> 58.6 us, 1x128K 204.8 -> 193.0; bench/NOTES.md,
// stops 17 and 18).
template <int DT, int D>
DecodeKernel pick_tile(int32_t tile_heads, bool favour_occupancy, bool tau_stream) {
  // The tensor-core passes of head_dim 256 keep q and the accumulators of 256 dims in registers
  // (128 of them): with 3 blocks per SM they spill, with 2 they fit.
  constexpr int kBlocks = SR_GPU_TENSOR_CORES && DT != SR_DTYPE_F32 && D == 256 ? 2 : 3;
  switch (tile_heads) {
    case 1: return kernel<DT, D, 1, kBlocks>(tau_stream);
    case 4:
      if constexpr (DT == SR_DTYPE_BF16 && D == 128) {
        const int forced = forced_blocks_per_sm();
        if (forced == 4 || (forced == 0 && favour_occupancy)) return kernel<DT, D, 4, 4>(tau_stream);
      }
      return kernel<DT, D, 4, kBlocks>(tau_stream);
    case 8: return kernel<DT, D, 8, 2>(tau_stream);
    default: return DecodeKernel{};
  }
}

template <int DT>
DecodeKernel pick_launcher(int32_t head_dim, int32_t tile_heads, bool favour_occupancy, bool tau_stream) {
  switch (head_dim) {
    case 64: return pick_tile<DT, 64>(tile_heads, favour_occupancy, tau_stream);
    case 128: return pick_tile<DT, 128>(tile_heads, favour_occupancy, tau_stream);
    case 256: return pick_tile<DT, 256>(tile_heads, favour_occupancy, tau_stream);
    default: return DecodeKernel{};
  }
}

}  // namespace sr::gpu
