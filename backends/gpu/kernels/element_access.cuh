// Device-side element access: 16-byte rows of a cache widened to f32, single elements of any
// sr_dtype (conversions from src/shared_arithmetic/dtype_convert.h, as on the CPU), and warp reductions.
#pragma once

#include <math.h>

#include "shared_arithmetic/dtype_convert.h"
#include "compat.h"
#include "sinkrouter/sinkrouter.h"

namespace sr::gpu {

template <int DT>
struct CacheElem;

template <>
struct CacheElem<SR_DTYPE_BF16> {
  static constexpr int kPerLoad = 8;
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
  __device__ static void widen(const Bytes16& b, float* out) {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(b.w[i]);
  }
};

// N elements of `base` (any sr_dtype; element i at index(i)) as floats, zeros where !live.
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

// Element i of `base` (any sr_dtype) as a float.
__device__ __forceinline__ float load_any(const void* base, int64_t i, int32_t dtype) {
  float x[1];
  load_many(base, dtype, true, [i](int) { return i; }, x);
  return x[0];
}

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
