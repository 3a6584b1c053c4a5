// Element sizes, and scalar conversions between f32 and the 16-bit storage types by bit
// pattern, so the same arithmetic (round to nearest even, NaN kept) runs on the host and in GPU
// kernels.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shared_arithmetic/host_device.h"
#include "sinkrouter/sinkrouter.h"

namespace sr {

// Bytes of one element of an sr_dtype value (0 for SR_DTYPE_CACHE and unknown values): the one
// rule for the core, the CPU backend and the GPU kernels.
SR_HD constexpr size_t dtype_element_bytes(int dtype) {
  return dtype == SR_DTYPE_F32 ? 4 : dtype == SR_DTYPE_F16 || dtype == SR_DTYPE_BF16 ? 2 : 0;
}

SR_HD float bits_to_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

SR_HD uint32_t float_to_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

// bf16 is the top half of an f32.
SR_HD float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

SR_HD uint16_t float_to_bf16(float f) {
  uint32_t bits = float_to_bits(f);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, sign kept
  }
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

SR_HD float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf/NaN
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal or zero: value = mantissa * 2^-24, exact in f32.
  float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

SR_HD uint16_t float_to_f16(float f) {
  uint32_t bits = float_to_bits(f);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs_bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs_bits < 0x38800000u) {  // below the smallest normal f16: round to a subnormal
    // Adding 0.5 shifts the mantissa so the hardware's f32 rounding (nearest even) does it.
    float shifted = bits_to_float(abs_bits) + 0.5f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(float_to_bits(shifted) - 0x3f000000u));
  }
  uint32_t mantissa_odd = (abs_bits >> 13) & 1u;
  abs_bits += 0xc8000fffu + mantissa_odd;  // rebias exponent (-112 << 23) and round to even
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(abs_bits >> 13));
}

}  // namespace sr
