// Lets the headers in src/shared_arithmetic compile for the host (CPU backend, core) and for the GPU
// kernels (nvcc, hipcc) unchanged.
#pragma once

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>  // __host__, __device__, __forceinline__ (nvcc predefines them)
#endif

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SR_HD __host__ __device__ __forceinline__
#else
// static: each translation unit keeps its own copy, so a file compiled for AVX-512 never
// lends its version to one compiled for the baseline instruction set.
#define SR_HD static inline
#endif

// Loops over a fixed small count unrolled in device code, so arrays they index stay in registers
// (the host compiler of a GPU source sees the same lines and knows no such pragma).
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define SR_UNROLL _Pragma("unroll")
#else
#define SR_UNROLL
#endif
