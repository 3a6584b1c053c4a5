// The per-call floor of this GPU, timed as sr_gpu_bench times a call (events around one launch,
// synchronised, median of 35 after 5 warm-ups): an empty kernel, and a plain read of the K and V
// bytes of the 1x4K step from HBM. No decode step can beat these; run_device.sh prints them
// beside the benchmark (bench/NOTES.md, stop 17).
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "per_call_timing.h"

namespace {

struct SmallParams {
  float* sink;
};
struct LargeParams {  // about the size of the decode kernel's parameters (1.2 KB)
  float* sink;
  int pad[300];
};

__global__ void empty_small(SmallParams p) {
  if (threadIdx.x == 1234) p.sink[0] = 0.f;  // never true: keeps the parameter live
}

__global__ void empty_large(const __grid_constant__ LargeParams p) {
  if (threadIdx.x == 1234) p.sink[0] = static_cast<float>(p.pad[7]);
}

// Reads n float4 with a grid-stride loop; the sum keeps the loads.
__global__ void read_all(const float4* __restrict__ x, size_t n, float* sink) {
  float acc = 0.f;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 v = __ldg(x + i);
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 12345.f) sink[0] = acc;
}

bool ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::printf("%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

// Prints one line: the median call of `launch` and its host share, or why it could not be timed.
template <class Launch>
bool report(const char* what, cudaStream_t stream, Launch&& launch) {
  double us = 0.0, host_us = 0.0;
  if (!ok(sr::bench::per_call_us(stream, launch, &us, &host_us), what)) return false;
  std::printf("  %s: %5.1f us (host %.1f)\n", what, us, host_us);
  return true;
}

// The large empty kernel as the decode kernel is launched on sm_90: cudaLaunchKernelEx with
// programmatic stream serialization (backends/gpu/compat.h, launch_kernel).
cudaError_t launch_programmatic(const LargeParams& params, cudaStream_t stream) {
  cudaLaunchAttribute overlap[1];
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(264);
  config.blockDim = dim3(128);
  config.stream = stream;
  config.attrs = overlap;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, empty_large, params);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  cudaStream_t stream;
  if (!ok(cudaStreamCreate(&stream), "stream")) return 1;
  const size_t bytes = size_t{17} << 20;  // K + V of the 1x4K step (Llama-3.1-8B layer, bf16)
  const int rotation = 16;                // 272 MB: each call reads from HBM, not the L2
  std::vector<float4*> buffers(rotation, nullptr);
  for (auto& b : buffers) {
    if (!ok(cudaMalloc(&b, bytes), "cudaMalloc") || !ok(cudaMemset(b, 0, bytes), "cudaMemset")) return 1;
  }
  float* sink = nullptr;
  if (!ok(cudaMalloc(&sink, sizeof(float)), "cudaMalloc")) return 1;
  const SmallParams small{sink};
  LargeParams large{};
  large.sink = sink;
  bool fine = report("empty kernel, 16 B of parameters, 1 block", stream,
                     [&](int) { empty_small<<<1, 32, 0, stream>>>(small); });
  fine = fine && report("empty kernel, 1.2 KB of parameters, 264 blocks", stream,
                        [&](int) { empty_large<<<264, 128, 0, stream>>>(large); });
  fine = fine && report("the same, launched as a programmatic dependent", stream,
                        [&](int) { (void)launch_programmatic(large, stream); });
  for (int blocks : {264, 528, 1056}) {
    char what[80];
    std::snprintf(what, sizeof what, "plain read of 17 MB from HBM, %4d blocks of 256", blocks);
    fine = fine && report(what, stream, [&](int i) {
             read_all<<<blocks, 256, 0, stream>>>(buffers[i % rotation], bytes / 16, sink);
           });
  }
  fine = ok(cudaDeviceSynchronize(), "run") && fine;
  for (auto b : buffers) cudaFree(b);
  cudaFree(sink);
  return fine ? 0 : 1;
}
