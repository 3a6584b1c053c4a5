// The harness's own model of the three buffer element types, written independently of the
// library's bit tricks: a value is rounded to a format in double arithmetic (round to nearest,
// ties to even, subnormals kept, overflow to infinity), so read-back can be predicted exactly.
// FP8 cache rows are the exception: their scale and codes are the library's shared arithmetic
// (shared_arithmetic/fp8_rows.h), so the model predicts the one rounding the library defines.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "shared_arithmetic/fp8_rows.h"
#include "sinkrouter/sinkrouter.h"

namespace sr_fuzz {

struct FloatFormat {
  int mantissa_bits;
  int exponent_bits;
};

inline FloatFormat format_of(sr_dtype dtype) {
  switch (dtype) {
    case SR_DTYPE_F16: return {10, 5};
    case SR_DTYPE_BF16: return {7, 8};
    default: return {23, 8};
  }
}

// Bits of the nearest representable value (ties to even). x must not be NaN.
inline uint32_t encode_rne(double x, FloatFormat f) {
  const uint32_t sign = std::signbit(x) ? 1u << (f.mantissa_bits + f.exponent_bits) : 0u;
  const int bias = (1 << (f.exponent_bits - 1)) - 1;
  const uint32_t inf_bits = static_cast<uint32_t>((1 << f.exponent_bits) - 1) << f.mantissa_bits;
  const double a = std::fabs(x);
  if (std::isinf(a)) return sign | inf_bits;
  if (a == 0.0) return sign;
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exponent = e - 1;
  const int min_exponent = 1 - bias;
  if (exponent < min_exponent) {
    // Subnormal: counts of the smallest step; a carry into 2^mantissa_bits is the smallest
    // normal, which the same bit pattern encodes.
    double q = std::nearbyint(std::ldexp(a, f.mantissa_bits - min_exponent));
    return sign | static_cast<uint32_t>(q);
  }
  double q = std::nearbyint(std::ldexp(a, f.mantissa_bits - exponent));
  if (q >= std::ldexp(1.0, f.mantissa_bits + 1)) {
    q /= 2;
    exponent += 1;
  }
  if (exponent > bias) return sign | inf_bits;
  return sign | (static_cast<uint32_t>(exponent + bias) << f.mantissa_bits) |
         (static_cast<uint32_t>(q) - (1u << f.mantissa_bits));
}

inline double decode_bits(uint32_t bits, FloatFormat f) {
  const int bias = (1 << (f.exponent_bits - 1)) - 1;
  const bool negative = (bits >> (f.mantissa_bits + f.exponent_bits)) & 1u;
  const uint32_t field = (bits >> f.mantissa_bits) & ((1u << f.exponent_bits) - 1);
  const uint32_t mantissa = bits & ((1u << f.mantissa_bits) - 1);
  double value;
  if (field == (1u << f.exponent_bits) - 1) {
    value = mantissa ? NAN : INFINITY;
  } else if (field == 0) {
    value = std::ldexp(static_cast<double>(mantissa), 1 - bias - f.mantissa_bits);
  } else {
    value = std::ldexp(static_cast<double>(mantissa | (1u << f.mantissa_bits)),
                       static_cast<int>(field) - bias - f.mantissa_bits);
  }
  return negative ? -value : value;
}

// The value x becomes when stored as a 16- or 32-bit dtype (FP8 rounds whole rows: below).
inline float round_to(sr_dtype dtype, float x) {
  if (std::isnan(x) || dtype == SR_DTYPE_F32) return x;
  return static_cast<float>(decode_bits(encode_rne(x, format_of(dtype)), format_of(dtype)));
}

// The values a cache of `dtype` stores for `values` (f32, rows of head_dim: one token's K or V of
// one kv-head each). FP8: each row's amax, its scale amax / 448, codes, and their decoded values.
inline void round_rows_to(sr_dtype dtype, int32_t head_dim, std::vector<float>& values) {
  if (dtype != SR_DTYPE_FP8_E4M3) {
    for (float& x : values) x = round_to(dtype, x);
    return;
  }
  for (size_t row = 0; row + head_dim <= values.size(); row += head_dim) {
    float amax = 0.f;
    for (int32_t d = 0; d < head_dim; ++d) amax = sr::fp8_amax_step(amax, values[row + d]);
    const float scale = sr::fp8_row_scale(amax);
    for (int32_t d = 0; d < head_dim; ++d) values[row + d] = sr::fp8_decode(sr::fp8_encode(values[row + d], scale), scale);
  }
}

// Element i of a buffer of dtype, widened to float.
inline float load_element(const void* base, int64_t i, sr_dtype dtype) {
  if (dtype == SR_DTYPE_F32) {
    float x;
    std::memcpy(&x, static_cast<const unsigned char*>(base) + 4 * i, 4);
    return x;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const unsigned char*>(base) + 2 * i, 2);
  return static_cast<float>(decode_bits(h, format_of(dtype)));
}

// Stores x, rounded to dtype, as element i.
inline void store_element(void* base, int64_t i, sr_dtype dtype, float x) {
  if (dtype == SR_DTYPE_F32) {
    std::memcpy(static_cast<unsigned char*>(base) + 4 * i, &x, 4);
    return;
  }
  uint16_t h = static_cast<uint16_t>(encode_rne(x, format_of(dtype)));
  std::memcpy(static_cast<unsigned char*>(base) + 2 * i, &h, 2);
}

inline size_t element_size(sr_dtype dtype) { return sr_dtype_size(dtype); }  // (ops_misc.cpp checks it)

}  // namespace sr_fuzz
