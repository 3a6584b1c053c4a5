// FP8 E4M3 cache rows: a row (one token's K or V of one kv-head) is stored as head_dim E4M3
// codes and one f32 scale, amax / 448, computed by the library from the row itself. The same
// arithmetic runs on the host (CPU storage) and in GPU storage kernels.
// docs/ARCHITECTURE.md, "FP8 cache".
#pragma once

#include <math.h>

#include "shared_arithmetic/dtype_convert.h"

namespace sr {

constexpr float kFp8E4M3Max = 448.f;
// Rows whose largest magnitude is below 2^-100 store zeros with scale 0: far below any K or V a
// model produces, and it keeps every scale a normal f32 (x / scale stays exact enough).
constexpr float kFp8SmallestAmax = 7.888609052210118e-31f;  // 2^-100

// One step of a row's largest magnitude; NaN once an element is NaN or infinite (such a row has
// no finite scale: it reads back as NaN, as a 16-bit cache holding NaN would).
SR_HD float fp8_amax_step(float amax, float x) {
  const float a = fabsf(x);
  if (amax != amax) return amax;
  if (!(a <= 3.4028234663852886e38f)) return NAN;
  return a > amax ? a : amax;
}

SR_HD float fp8_row_scale(float amax) {
  if (amax != amax) return NAN;
  return amax < kFp8SmallestAmax ? 0.f : amax / kFp8E4M3Max;
}

// A NaN scale stores the NaN code; a zero scale stores zeros.
SR_HD uint8_t fp8_encode(float x, float scale) {
  if (scale > 0.f) return float_to_fp8_e4m3(x / scale);
  return scale == 0.f ? uint8_t{0} : uint8_t{0x7f};
}

SR_HD float fp8_decode(uint8_t code, float scale) { return fp8_e4m3_to_float(code) * scale; }

}  // namespace sr
