// How the GPU benchmarks time one call: CUDA events around one launch, synchronised, 40 calls of
// which the first 5 warm up, the median reported. sr_gpu_bench and sr_launch_floor share it, so
// the floor is timed exactly as our calls are.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

namespace sr::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// launch(i) enqueues call i on `stream`. Writes the median call in microseconds to *us; returns
// the first CUDA error of the timing itself.
template <class Launch>
cudaError_t per_call_us(cudaStream_t stream, Launch&& launch, double* us) {
  constexpr int kCalls = 40, kWarmUp = 5;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaError_t e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&stop);
  std::vector<double> times;
  for (int i = 0; i < kCalls && e == cudaSuccess; ++i) {
    e = cudaEventRecord(start, stream);
    if (e == cudaSuccess) launch(i);
    if (e == cudaSuccess) e = cudaEventRecord(stop, stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(stop);
    float ms = 0.f;
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
    if (i >= kWarmUp) times.push_back(ms * 1e3);
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (e == cudaSuccess) *us = median(times);
  return e;
}

}  // namespace sr::bench
