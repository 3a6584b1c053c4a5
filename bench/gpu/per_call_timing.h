// How the GPU benchmarks time one call: CUDA events around one launch, synchronised, 40 calls of
// which the first 5 warm up, the median reported. sr_gpu_bench and sr_launch_floor share it, so
// the floor is timed exactly as our calls are. The host's share of a call (the time the launch
// itself takes on the CPU, which the events include) is reported beside it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace sr::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// launch(i) enqueues call i on `stream`. Writes the median call in microseconds to *us and the
// median time launch(i) took on the host to *host_us; returns the first CUDA error of the
// timing itself.
template <class Launch>
cudaError_t per_call_us(cudaStream_t stream, Launch&& launch, double* us, double* host_us) {
  constexpr int kCalls = 40, kWarmUp = 5;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaError_t e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&stop);
  std::vector<double> times, host_times;
  for (int i = 0; i < kCalls && e == cudaSuccess; ++i) {
    e = cudaEventRecord(start, stream);
    const auto host_start = std::chrono::steady_clock::now();
    if (e == cudaSuccess) launch(i);
    const std::chrono::duration<double, std::micro> host = std::chrono::steady_clock::now() - host_start;
    if (e == cudaSuccess) e = cudaEventRecord(stop, stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(stop);
    float ms = 0.f;
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
    if (i >= kWarmUp) {
      times.push_back(ms * 1e3);
      host_times.push_back(host.count());
    }
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (e == cudaSuccess) {
    *us = median(times);
    *host_us = median(host_times);
  }
  return e;
}

}  // namespace sr::bench
