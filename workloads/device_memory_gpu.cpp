// Device memory of a GPU backend for host programs (tests, samples, the benchmark), written
// once for CUDA and HIP through the kernels' compatibility header and compiled once per vendor
// (SR_GPU_HIP selects HIP; SR_MEMORY_OPS_NAME names the vendor's table). Every runtime call is
// checked: a failure aborts the program with the call and the runtime's message, since nothing
// after it could be trusted.
#include "compat.h"

#include <cstdio>
#include <cstdlib>

#include "device_buffers.h"

namespace sr::workloads {
namespace {

void check(gpuError_t status, const char* what) {
  if (status == gpuSuccess) return;
  std::fprintf(stderr, "%s test memory: %s failed: %s\n", SR_GPU_VENDOR, what, gpuGetErrorString(status));
  std::abort();
}

void* alloc(size_t bytes) {
  void* p = nullptr;
  check(gpuMalloc(&p, bytes == 0 ? 1 : bytes), "malloc");
  return p;
}

void release(void* p) { check(gpuFree(p), "free"); }

void to_device(void* dst, const void* src, size_t bytes) {
  check(gpuMemcpy(dst, src, bytes, gpuMemcpyHostToDevice), "memcpy to the device");
}

void to_host(void* dst, const void* src, size_t bytes) {
  check(gpuMemcpy(dst, src, bytes, gpuMemcpyDeviceToHost), "memcpy to the host");
}

void poison(void* dst, size_t bytes) { check(gpuMemset(dst, 0xff, bytes), "memset"); }

void synchronize() { check(gpuDeviceSynchronize(), "device synchronize"); }

const DeviceMemoryOps kOps = {alloc, release, to_device, to_host, poison, synchronize};

}  // namespace

const DeviceMemoryOps* SR_MEMORY_OPS_NAME() { return &kOps; }

}  // namespace sr::workloads
