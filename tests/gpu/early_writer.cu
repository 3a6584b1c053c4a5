// A kernel that lets the next kernel in its stream launch at once (programmatic dependent
// launch, sm_90) and only then, after a delay, writes its output: a decode step launched
// behind it that read q before waiting for it would read the old values.
#include <cuda_runtime.h>

#include "early_writer.h"

namespace sr::testing {
namespace {

__global__ void early_release_copy(float* dst, const float* src, int n, long long delay_cycles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  const long long start = clock64();
  while (clock64() - start < delay_cycles) {
  }
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dst[i] = src[i];
}

}  // namespace

cudaError_t launch_early_release_copy(float* dst, const float* src, int n, long long delay_cycles, cudaStream_t stream) {
  early_release_copy<<<1, 128, 0, stream>>>(dst, src, n, delay_cycles);
  return cudaGetLastError();
}

}  // namespace sr::testing
