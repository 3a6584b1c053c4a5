// Every name that differs between CUDA and HIP, in one place: the runtime calls, the warp
// shuffles (the kernels keep a logical warp of 32 lanes, also on 64-wide wavefronts), and the
// async-copy/bf16 details. The kernel sources include this and never test the vendor.
#pragma once

#if defined(__HIPCC__) || defined(SR_GPU_HIP)
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>

#define gpuError_t hipError_t
#define gpuSuccess hipSuccess
#define gpuErrorMemoryAllocation hipErrorOutOfMemory
#define gpuStream_t hipStream_t
#define gpuEvent_t hipEvent_t
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuSetDevice hipSetDevice
#define gpuGetDevice hipGetDevice
#define gpuDeviceProp hipDeviceProp_t
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMallocAsync hipMallocAsync
#define gpuFreeAsync hipFreeAsync
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemcpy2D hipMemcpy2D
#define gpuMemset hipMemset
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuDeviceSynchronize hipDeviceSynchronize
#define gpuFuncSetAttribute hipFuncSetAttribute
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define SR_GPU_VENDOR "hip"
// The passes over K and V run on the vector cores (AMD's matrix cores have their own operand
// layouts, not written yet).
#define SR_GPU_TENSOR_CORES 0
#define SR_GRID_CONSTANT
// clang 15 has no __grid_constant__: a by-value parameter whose address is taken is copied
// into per-lane scratch (1.2 KB for DecodeParams). The kernel-argument segment starts with
// the first parameter, so read it there.
#define SR_KERNEL_PARAM_REF(param) (*(const decltype(param)*)__builtin_amdgcn_kernarg_segment_ptr())
// The second argument means blocks per SM on CUDA but waves per SIMD on AMD (64-wide waves,
// 4 SIMDs per CU); passed unconverted it caps the registers far lower, and the kernel spills.
#define SR_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__((threads), ((min_blocks) * ((threads) / 64) + 3) / 4)
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define gpuError_t cudaError_t
#define gpuSuccess cudaSuccess
#define gpuErrorMemoryAllocation cudaErrorMemoryAllocation
#define gpuStream_t cudaStream_t
#define gpuEvent_t cudaEvent_t
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuSetDevice cudaSetDevice
#define gpuGetDevice cudaGetDevice
#define gpuDeviceProp cudaDeviceProp
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMallocAsync cudaMallocAsync
#define gpuFreeAsync cudaFreeAsync
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemcpy2D cudaMemcpy2D
#define gpuMemset cudaMemset
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuDeviceSynchronize cudaDeviceSynchronize
#define gpuFuncSetAttribute cudaFuncSetAttribute
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define SR_GPU_VENDOR "cuda"
// 16-bit caches run their passes over K and V on tensor cores (mma.sync, sm_80 and newer).
#define SR_GPU_TENSOR_CORES 1
// Kernel parameters read in place (indexed at run time) instead of copied per thread.
#define SR_GRID_CONSTANT __grid_constant__
// A reference to a kernel's first parameter, read in place (HIP needs a different spelling).
#define SR_KERNEL_PARAM_REF(param) (param)
#define SR_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__(threads, min_blocks)
#endif

#include <stdint.h>
#include <string.h>

namespace sr::gpu {

// Resident blocks of `kernel` per multiprocessor at `threads` threads and no dynamic shared memory.
template <class Kernel>
gpuError_t occupancy_blocks_per_sm(int* blocks, Kernel kernel, int threads) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return hipOccupancyMaxActiveBlocksPerMultiprocessor(blocks, reinterpret_cast<const void*>(kernel), threads, 0);
#else
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kernel, threads, 0);
#endif
}

// Launches kernel(params) on `stream`, one block of `threads` per cell of `grid`. `programmatic`:
// the launch may overlap the end of the kernel before it in the stream (CUDA's programmatic
// dependent launch, sm_90 and later; the kernel must wait_for_prior_grids() before reading
// anything). HIP has no such launch: there it is an ordinary one. (For the GPU compilers only.)
#if defined(__CUDACC__) || defined(__HIPCC__)
template <class Params>
gpuError_t launch_kernel(void (*kernel)(Params), dim3 grid, int threads, gpuStream_t stream, bool programmatic,
                         const Params& params) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  (void)programmatic;
  kernel<<<grid, threads, 0, stream>>>(params);
  return hipGetLastError();
#else
  cudaLaunchAttribute overlap[1];
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(threads);
  config.stream = stream;
  config.attrs = overlap;
  config.numAttrs = programmatic ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, params);
#endif
}
#endif

// Whether a device can launch kernels as programmatic dependents (launch_kernel).
inline bool programmatic_launch_supported(const gpuDeviceProp& prop) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  (void)prop;
  return false;
#else
  return prop.major >= 9;
#endif
}

// The logical warp every kernel is written for. On 64-wide wavefronts the shuffles below stay
// inside each half, so a reduction over 32 lanes means the same thing on both vendors.
constexpr int kWarp = 32;

#if defined(__CUDACC__) || defined(__HIPCC__)

// Butterfly exchange inside the logical warp (T: float, double or int).
template <class T>
__device__ __forceinline__ T shfl_xor(T value, int mask) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return __shfl_xor(value, mask, kWarp);
#else
  return __shfl_xor_sync(0xffffffffu, value, mask, kWarp);
#endif
}

__device__ __forceinline__ float shfl(float value, int src_lane) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return __shfl(value, src_lane, kWarp);
#else
  return __shfl_sync(0xffffffffu, value, src_lane, kWarp);
#endif
}

// Bit i set where lane i of this logical warp passes `predicate`.
__device__ __forceinline__ unsigned warp_ballot(bool predicate) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  unsigned long long all = __ballot(predicate);
  // This logical warp's half of the wavefront: the physical lane says which (always the low
  // half on 32-wide wavefronts, where threadIdx.x & 32 would shift everything out).
  return static_cast<unsigned>(all >> (__lane_id() & 32u));
#else
  return __ballot_sync(0xffffffffu, predicate);
#endif
}

__device__ __forceinline__ void warp_sync() {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  // ROCm 5.2 has no __syncwarp. A wavefront runs in lockstep; the fences stop the compiler
  // from moving shared-memory accesses across the barrier (what __syncwarp promises on CUDA).
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
#else
  __syncwarp();
#endif
}

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) % kWarp; }
__device__ __forceinline__ int warp_id() { return static_cast<int>(threadIdx.x) / kWarp; }

// 16 bytes from global memory, read once: kept out of L1 (streaming), so the page pool does
// not evict the small tables every block rereads.
struct alignas(16) Bytes16 {
  uint32_t w[4];
};

// kWideFetch: the L2 fetches the whole aligned 256 bytes around p from DRAM (a row of a
// head_dim-128 bf16 cache), so each load keeps more bytes in flight: routed steps, whose
// skipped V blocks break the stream, ran faster (bench/NOTES.md). Passes that
// prefetch rows into the L2 themselves load without it: the two together were slower.
template <bool kWideFetch = true>
__device__ __forceinline__ Bytes16 load_stream16(const void* p) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return *static_cast<const Bytes16*>(p);
#else
  if constexpr (kWideFetch) {
    // (the pool is read-only while a decode kernel runs, so the non-coherent path is safe)
    Bytes16 b;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(b.w[0]), "=r"(b.w[1]), "=r"(b.w[2]), "=r"(b.w[3])
        : "l"(p));
    return b;
  } else {
    uint4 v = __ldcs(static_cast<const uint4*>(p));
    return Bytes16{{v.x, v.y, v.z, v.w}};
  }
#endif
}

// 8 bytes, read as load_stream16 reads 16 (the FP8 rows of the CUDA-core passes: 8 elements
// per load, the indexing of the 16-bit caches).
template <bool kWideFetch = true>
__device__ __forceinline__ uint2 load_stream8(const void* p) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return *static_cast<const uint2*>(p);
#else
  if constexpr (kWideFetch) {
    uint2 v;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
  } else {
    return __ldcs(static_cast<const uint2*>(p));
  }
#endif
}

// Asks the L2 for the 128-byte line holding p, without waiting for it or using a register: raises
// the bytes in flight beyond what registers hold. (No-op on HIP, where it is not measured yet.)
__device__ __forceinline__ void prefetch_l2(const void* p) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  (void)p;
#else
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// A load that sees another block's stores after a fence (bypasses the incoherent L1).
__device__ __forceinline__ float load_coherent(const float* p) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  // clang's atomic builtins take integers only; the relaxed load skips the non-coherent L1.
  return __uint_as_float(__atomic_load_n(reinterpret_cast<const unsigned int*>(p), __ATOMIC_RELAXED));
#else
  return __ldcg(p);
#endif
}

// Four consecutive floats (16-byte aligned), as load_coherent.
__device__ __forceinline__ float4 load_coherent4(const float* p) {
#if defined(__HIPCC__) || defined(SR_GPU_HIP)
  return make_float4(load_coherent(p), load_coherent(p + 1), load_coherent(p + 2), load_coherent(p + 3));
#else
  return __ldcg(reinterpret_cast<const float4*>(p));
#endif
}

// Programmatic dependent launch (sm_90; a no-op elsewhere and on HIP). A kernel launched with
// programmatic serialization may start while the kernel before it in the stream finishes (or,
// if that kernel releases its dependents early, while it still runs): wait_for_prior_grids()
// holds it until that kernel has completed and its writes are visible.
__device__ __forceinline__ void wait_for_prior_grids() {
#if !(defined(__HIPCC__) || defined(SR_GPU_HIP)) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Two packed f16 values (low half first) widened to f32 by the hardware.
__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
  __half2 h;
  static_assert(sizeof h == sizeof bits, "__half2 is two halves");
  memcpy(&h, &bits, sizeof bits);
  return __half22float2(h);
}

#endif

}  // namespace sr::gpu
