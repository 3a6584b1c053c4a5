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
  return dtype == SR_DTYPE_F32 ? 4 : dtype == SR_DTYPE_F16 || dtype == SR_DTYPE_BF16 ? 2
         : dtype == SR_DTYPE_FP8_E4M3                        ? 1
                                                             : 0;
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

// ---------------------------------------------------------------- FP8 E4M3 (OCP)
// 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; subnormals below 2^-6 in steps of 2^-9;
// no infinities; S.1111.111 is NaN, so the largest finite value is 448 (S.1111.110).

SR_HD float fp8_e4m3_to_float(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t exponent = (code >> 3) & 0xfu;
  const uint32_t mantissa = code & 0x7u;
  if (exponent == 0xfu && mantissa == 0x7u) return bits_to_float(sign | 0x7fc00000u);  // NaN
  if (exponent != 0) return bits_to_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
  const float magnitude = static_cast<float>(mantissa) * 0.001953125f;  // subnormal: m * 2^-9, exact
  return sign ? -magnitude : magnitude;
}

// Round to nearest, ties to even; magnitudes above 448 and infinities saturate to +-448 (the
// saturating conversion: a scale of amax / 448 maps a row onto the finite range); NaN stays NaN.
SR_HD uint8_t float_to_fp8_e4m3(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);  // NaN
  if (abs_bits >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7eu);  // >= 448, inf: saturate
  if (abs_bits < 0x3c800000u) {  // below 2^-6, the smallest normal: round to a subnormal step
    // Adding 2^14 (whose ulp is 2^-9) lets the f32 addition round to nearest even.
    const float shifted = bits_to_float(abs_bits) + 16384.f;
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(float_to_bits(shifted) - 0x46800000u));
  }
  const uint32_t mantissa_odd = (abs_bits >> 20) & 1u;
  abs_bits += 0x7ffffu + mantissa_odd;  // round the mantissa to 3 bits, ties to even (carries into the exponent)
  return static_cast<uint8_t>(sign | static_cast<uint8_t>((abs_bits >> 20) - (120u << 3)));
}

}  // namespace sr
