// exp(x) for x <= 0 in f32 with about 2 ulp error, written without branches or calls so the
// compiler vectorises loops over it (libm's expf does not vectorise without -ffast-math).
#pragma once

#include <cstdint>
#include <cstring>

namespace sr::cpu {

static inline float fast_exp(float x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2].
  x = x < -87.0f ? -87.0f : x;  // below this the result is under 2^-125: flushed below
  x = x > 88.0f ? 88.0f : x;
  // Round to nearest even by adding and removing 1.5 * 2^23 (|x / ln2| < 2^22 here): plain
  // arithmetic that every compiler vectorises (clang 14 has no __builtin_roundevenf). Needs
  // IEEE evaluation: never build this with -ffast-math, which would cancel the two additions.
  constexpr float kRoundMagic = 12582912.0f;
  float n = (x * 1.44269504088896341f + kRoundMagic) - kRoundMagic;
  float r = x - n * 0.693359375f;  // ln2 split in two so r stays exact
  r = r - n * -2.12194440e-4f;
  // Minimax polynomial for exp(r) on [-ln2/2, ln2/2] (Cephes expf).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  float result = p * scale;
  return x <= -87.0f ? 0.0f : result;
}

}  // namespace sr::cpu
