// Device-side element access: a load's worth of a cache row widened to f32 (16 bytes; 8 for
// FP8), single elements of the 32- and 16-bit dtypes (conversions from
// src/shared_arithmetic/dtype_convert.h, as on the CPU), and warp reductions.
#pragma once

#include <math.h>

#include "shared_arithmetic/dtype_convert.h"
#include "compat.h"
#include "sinkrouter/sinkrouter.h"

namespace sr::gpu {

template <int DT>
struct CacheElem;

// kPerLoad elements arrive in one load of kLoadBytes (in the first words of a Bytes16).
template <>
struct CacheElem<SR_DTYPE_BF16> {
  static constexpr int kPerLoad = 8;
  static constexpr int kLoadBytes = 16;
  __device__ static void widen(const Bytes16& b, float* out) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(b.w[i] << 16);
      out[2 * i + 1] = __uint_as_float(b.w[i] & 0xffff0000u);
    }
  }
};

template <>
struct CacheElem<SR_DTYPE_F16> {
  static constexpr int kPerLoad = 8;
  static constexpr int kLoadBytes = 16;
  __device__ static void widen(const Bytes16& b, float* out) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float2 f = half2_bits_to_float2(b.w[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
};

template <>
struct CacheElem<SR_DTYPE_F32> {
  static constexpr int kPerLoad = 4;
  static constexpr int kLoadBytes = 16;
  __device__ static void widen(const Bytes16& b, float* out) {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(b.w[i]);
  }
};

// FP8 E4M3 codes, 8 per load (8 bytes, so a lane holds as many elements as for a 16-bit cache
// and the passes keep their registers). Every E4M3 value is exact in f16 (max 448, smallest
// subnormal 2^-9), so widening through f16 is exact. From sm_89 the hardware converts a pair
// (cvt.rn.f16x2.e4m3x2: low byte to the low half); on sm_80 and HIP (whose hardware FP8 on
// gfx940 is the FNUZ encoding, not OCP) the bits move: (b & 0x7f) << 7 | (b & 0x80) << 8 is the
// f16 of the value times 2^-8, subnormals included. widen() gives values times 1/kUnscale;
// the row's scale times kUnscale (a power of two: exact) restores them. The NaN code becomes a
// finite number there, but only rows with a NaN scale hold it, so their products stay NaN.
#if !(defined(__HIPCC__) || defined(SR_GPU_HIP)) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define SR_FP8_HARDWARE_WIDEN 1
#else
#define SR_FP8_HARDWARE_WIDEN 0
#endif

// Two E4M3 codes (bits 0-15 of `pair`) as two f16 (low half first), times 1/kUnscale.
__device__ __forceinline__ uint32_t fp8x2_to_f16x2(uint32_t pair) {
#if SR_FP8_HARDWARE_WIDEN
  uint32_t halves;
  asm("{cvt.rn.f16x2.e4m3x2 %0, %1;}" : "=r"(halves) : "h"(static_cast<unsigned short>(pair)));
  return halves;
#else
  const uint32_t t = (pair & 0xffu) << 8 | (pair & 0xff00u) << 16;  // each code at the top of its half
  return (t & 0x80008000u) | ((t & 0x7f007f00u) >> 1);
#endif
}

template <>
struct CacheElem<SR_DTYPE_FP8_E4M3> {
  static constexpr int kPerLoad = 8;
  static constexpr int kLoadBytes = 8;
  __device__ static float unscale() { return SR_FP8_HARDWARE_WIDEN ? 1.f : 256.f; }
  __device__ static void widen(const Bytes16& b, float* out) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float2 lo = half2_bits_to_float2(fp8x2_to_f16x2(b.w[i] & 0xffffu));
      const float2 hi = half2_bits_to_float2(fp8x2_to_f16x2(b.w[i] >> 16));
      out[4 * i] = lo.x;
      out[4 * i + 1] = lo.y;
      out[4 * i + 2] = hi.x;
      out[4 * i + 3] = hi.y;
    }
  }
};

// N elements of `base` (f32, f16 or bf16; element i at index(i)) as floats, zeros where !live.
// (q, out and the K/V buffers of appends and reads are never FP8; FP8 cache rows are read with
// their scales, storage_kernels.cuh and the passes.)
// Every load is issued before the first conversion: a conversion's branches otherwise hold
// each load back until the previous one has arrived.
template <int N, class Index>
__device__ __forceinline__ void load_many(const void* base, int32_t dtype, bool live, Index&& index, float (&x)[N]) {
  uint32_t raw[N];
  if (dtype == SR_DTYPE_F32) {
#pragma unroll
    for (int i = 0; i < N; ++i) raw[i] = live ? static_cast<const uint32_t*>(base)[index(i)] : 0u;
#pragma unroll
    for (int i = 0; i < N; ++i) x[i] = __uint_as_float(raw[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) raw[i] = live ? static_cast<const uint16_t*>(base)[index(i)] : 0u;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const uint16_t h = static_cast<uint16_t>(raw[i]);
      x[i] = dtype == SR_DTYPE_F16 ? f16_to_float(h) : bf16_to_float(h);
    }
  }
}

// Element i of `base` (f32, f16 or bf16) as a float.
__device__ __forceinline__ float load_any(const void* base, int64_t i, int32_t dtype) {
  float x[1];
  load_many(base, dtype, true, [i](int) { return i; }, x);
  return x[0];
}

// (f32, f16 or bf16)
__device__ __forceinline__ void store_any(void* base, int64_t i, int32_t dtype, float value) {
  if (dtype == SR_DTYPE_F32) {
    static_cast<float*>(base)[i] = value;
  } else {
    static_cast<uint16_t*>(base)[i] = dtype == SR_DTYPE_F16 ? float_to_f16(value) : float_to_bf16(value);
  }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, shfl_xor(v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}

// Non-negative floats (and +inf) order like their bits; NaN counts as +inf.
__device__ __forceinline__ void atomic_max_nonneg(unsigned int* target, float value) {
  if (!(value >= 0.f)) value = isnan(value) ? INFINITY : 0.f;
  atomicMax(target, __float_as_uint(value));
}

}  // namespace sr::gpu
