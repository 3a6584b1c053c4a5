// How fast a kernel can stream a buffer 40x the L2 from HBM, by staging design, on sm_90:
// (a) register-staged loads, the dense stream's own (N 16-byte loads in flight per thread,
// 128-thread blocks, B blocks per SM); (b) a producer warp feeding a ring of bulk copies
// (cp.async.bulk + mbarrier) into shared memory, consumer warps reading it, one block per SM
// (cuDNN's shape). The answer bounds what a change of staging could give the dense path
// (bench/NOTES.md, stop 21). run_device.sh probe runs it.
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "compat.h"  // load_stream16: the very load the decode kernel streams K and V with

#define CHECK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { std::printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)

__device__ __forceinline__ uint32_t smem(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* b, int count) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem(b)), "r"(count)); }
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem(b)) : "memory"); }
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  asm volatile(
      "{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra WAIT_%=;\n}" ::"r"(smem(b)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem(dst)), "l"(src),
               "r"(bytes), "r"(smem(bar))
               : "memory");
}

// (a) Each block streams contiguous 2 KB-per-warp steps; a thread keeps N loads in flight.
template <int N, int B>
__global__ void __launch_bounds__(128, B) registers(const uint4* data, size_t n16, float* out) {
  const size_t per_block_step = 128 * N;
  float acc = 0.f;
  for (size_t base = blockIdx.x * per_block_step; base < n16; base += gridDim.x * per_block_step) {
    sr::gpu::Bytes16 v[N];
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const size_t idx = base + i * 128 + threadIdx.x;
      v[i] = idx < n16 ? sr::gpu::load_stream16(data + idx) : sr::gpu::Bytes16{{0u, 0u, 0u, 0u}};
    }
#pragma unroll
    for (int i = 0; i < N; ++i) acc += __uint_as_float(v[i].w[0] ^ v[i].w[1] ^ v[i].w[2] ^ v[i].w[3]);
  }
  if (acc == 1234.5f) out[0] = acc;
}

// (b) Producer warp (the last) fills STAGES slots of STAGE_BYTES by bulk copies; CONSUMERS warps
// read each slot and release it.
template <int STAGES, int STAGE_BYTES, int CONSUMERS>
__global__ void __launch_bounds__(32 * (CONSUMERS + 1), 1) ring(const unsigned char* data, size_t chunks, float* out) {
  extern __shared__ __align__(128) unsigned char buf[];
  __shared__ uint64_t full[STAGES], empty[STAGES];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], CONSUMERS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (warp == CONSUMERS) {
    if (lane == 0) {
      int i = 0;
      for (size_t c = blockIdx.x; c < chunks; c += gridDim.x, ++i) {
        const int s = i % STAGES;
        const uint32_t round = i / STAGES;
        if (round > 0) mbar_wait(&empty[s], (round - 1) & 1);
        mbar_expect_tx(&full[s], STAGE_BYTES);
        bulk_load(buf + s * STAGE_BYTES, data + c * STAGE_BYTES, STAGE_BYTES, &full[s]);
      }
    }
  } else {
    float acc = 0.f;
    int i = 0;
    for (size_t c = blockIdx.x; c < chunks; c += gridDim.x, ++i) {
      const int s = i % STAGES;
      mbar_wait(&full[s], (i / STAGES) & 1);
      const uint4* p = reinterpret_cast<const uint4*>(buf + s * STAGE_BYTES);
      for (int k = warp * 32 + lane; k < STAGE_BYTES / 16; k += CONSUMERS * 32) {
        const uint4 v = p[k];
        acc += __uint_as_float(v.x ^ v.y ^ v.z ^ v.w);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[s]);
    }
    if (acc == 1234.5f) out[0] = acc;
  }
}

template <class Launch>
double time_gbs(Launch&& launch, size_t bytes) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int r = 0; r < 12; ++r) {
    cudaEventRecord(a);
    launch();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0.f;
    cudaEventElapsedTime(&t, a, b);
    if (r >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

int main() {
  const size_t bytes = size_t(2) << 30;  // 2 GiB: 40x the L2
  unsigned char* data;
  float* out;
  CHECK(cudaMalloc(&data, bytes));
  CHECK(cudaMalloc(&out, 4));
  CHECK(cudaMemset(data, 1, bytes));
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t n16 = bytes / 16;
  auto regs = [&](auto kernel, int blocks_per_sm, const char* name) {
    const double gbs = time_gbs([&] { kernel<<<sms * blocks_per_sm, 128>>>(reinterpret_cast<const uint4*>(data), n16, out); }, bytes);
    std::printf("registers %-28s %7.0f GB/s\n", name, gbs);
  };
  regs(registers<8, 3>, 3, "8 in flight, 3 blocks/SM");
  regs(registers<16, 3>, 3, "16 in flight, 3 blocks/SM");
  regs(registers<8, 4>, 4, "8 in flight, 4 blocks/SM");
  regs(registers<16, 4>, 4, "16 in flight, 4 blocks/SM");
  regs(registers<32, 3>, 3, "32 in flight, 3 blocks/SM");
  regs(registers<8, 8>, 8, "8 in flight, 8 blocks/SM");
  auto rings = [&](auto kernel, int stages, int stage_bytes, int consumers, const char* name) {
    const int shared = stages * stage_bytes;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared) != cudaSuccess) {
      std::printf("ring %s: no %d bytes of shared memory\n", name, shared);
      return;
    }
    const size_t chunks = bytes / stage_bytes;
    const double gbs = time_gbs([&] { kernel<<<sms, 32 * (consumers + 1), shared>>>(data, chunks, out); }, bytes);
    cudaError_t e = cudaGetLastError();
    std::printf("ring %-33s %7.0f GB/s %s\n", name, gbs, e == cudaSuccess ? "" : cudaGetErrorString(e));
  };
  rings(ring<12, 16384, 8>, 12, 16384, 8, "12 x 16 KB, 8 consumer warps");
  rings(ring<6, 32768, 8>, 6, 32768, 8, "6 x 32 KB, 8 consumer warps");
  rings(ring<24, 8192, 8>, 24, 8192, 8, "24 x 8 KB, 8 consumer warps");
  rings(ring<12, 16384, 4>, 12, 16384, 4, "12 x 16 KB, 4 consumer warps");
  rings(ring<4, 16384, 4>, 4, 16384, 4, "4 x 16 KB, 4 consumer warps");
  const double copy = time_gbs([&] { cudaMemcpyAsync(data + bytes / 2, data, bytes / 2, cudaMemcpyDeviceToDevice); }, bytes);
  std::printf("cudaMemcpy D2D (read + write)              %7.0f GB/s\n", copy);
  return 0;
}
