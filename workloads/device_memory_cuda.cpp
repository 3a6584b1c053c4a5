// Device memory of the CUDA backend for host programs (tests, samples, the benchmark). Every
// runtime call is checked: a failure aborts the program with the call and the runtime's
// message, since nothing after it could be trusted.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "device_buffers.h"

namespace sr::workloads {
namespace {

void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr, "CUDA test memory: %s failed: %s\n", what, cudaGetErrorString(status));
  std::abort();
}

void* alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
  return p;
}

void release(void* p) { check(cudaFree(p), "cudaFree"); }

void to_device(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
}

void to_host(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
}

void poison(void* dst, size_t bytes) { check(cudaMemset(dst, 0xff, bytes), "cudaMemset"); }

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

const DeviceMemoryOps kOps = {alloc, release, to_device, to_host, poison, synchronize};

}  // namespace

const DeviceMemoryOps* cuda_memory_ops() { return &kOps; }

}  // namespace sr::workloads
