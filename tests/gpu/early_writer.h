// See early_writer.cu.
#pragma once

#include <cuda_runtime.h>

namespace sr::testing {

// Copies n floats from src to dst on `stream` after about delay_cycles clock cycles, having let
// the next kernel in the stream launch first (sm_90; elsewhere the launch just follows).
cudaError_t launch_early_release_copy(float* dst, const float* src, int n, long long delay_cycles, cudaStream_t stream);

}  // namespace sr::testing
