// The FP8 E4M3 conversions of the shared arithmetic (src/shared_arithmetic/dtype_convert.h)
// against an independent float64 model of the format: every code decodes to its value, every
// finite value encodes to the nearest code with ties to even, and the edges (subnormals,
// saturation at 448, infinities, NaN, signed zero) behave as documented.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "shared_arithmetic/dtype_convert.h"
#include "test_helpers.h"

namespace sr {
namespace {

// The value of a code, from the format's definition (NaN for S.1111.111).
double model_value(int code) {
  const int sign = code >> 7, exponent = (code >> 3) & 15, mantissa = code & 7;
  if (exponent == 15 && mantissa == 7) return std::numeric_limits<double>::quiet_NaN();
  const double magnitude = exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  return sign ? -magnitude : magnitude;
}

// The code the saturating round-to-nearest-even conversion gives x, by search over every code.
int model_encode(double x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xff : 0x7f;
  const int sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  if (a >= 448.0) return sign | 0x7e;
  int best = 0;
  for (int c = 1; c <= 0x7e; ++c) {
    const double d = std::fabs(model_value(c) - a), best_d = std::fabs(model_value(best) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) best = c;
  }
  return sign | best;
}

TEST(Fp8E4M3, EveryCodeDecodesToItsValue) {
  for (int c = 0; c < 256; ++c) {
    const double expected = model_value(c);
    const float got = fp8_e4m3_to_float(static_cast<uint8_t>(c));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << "code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;  // -0 keeps its sign
    }
  }
  EXPECT_EQ(fp8_e4m3_to_float(0x7e), 448.f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.f, -9));
}

TEST(Fp8E4M3, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(float_to_fp8_e4m3(fp8_e4m3_to_float(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

TEST(Fp8E4M3, MidpointsRoundToTheEvenCode) {
  // Between consecutive positive codes c and c + 1 (both finite): the midpoint goes to the even
  // one, and a hair to either side to the nearer one. Midpoints are exact in f32.
  for (int c = 0; c + 1 <= 0x7e; ++c) {
    const float lo = fp8_e4m3_to_float(static_cast<uint8_t>(c)), hi = fp8_e4m3_to_float(static_cast<uint8_t>(c + 1));
    const float mid = 0.5f * (lo + hi);
    ASSERT_EQ(static_cast<double>(mid), 0.5 * (static_cast<double>(lo) + hi));
    const int even = (c & 1) == 0 ? c : c + 1;
    EXPECT_EQ(float_to_fp8_e4m3(mid), even) << "between " << lo << " and " << hi;
    EXPECT_EQ(float_to_fp8_e4m3(-mid), 0x80 | even);
    EXPECT_EQ(float_to_fp8_e4m3(std::nextafter(mid, 0.f)), c);
    EXPECT_EQ(float_to_fp8_e4m3(std::nextafter(mid, 1000.f)), c + 1);
  }
}

TEST(Fp8E4M3, SaturatesInfinitiesAndKeepsNaN) {
  EXPECT_EQ(float_to_fp8_e4m3(448.f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(463.99f), 0x7e);  // would round to 448 anyway
  EXPECT_EQ(float_to_fp8_e4m3(464.f), 0x7e);    // the tie with 480 (not a finite code): saturates
  EXPECT_EQ(float_to_fp8_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(float_to_fp8_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(float_to_fp8_e4m3(-std::numeric_limits<float>::quiet_NaN()), 0xff);
  EXPECT_EQ(float_to_fp8_e4m3(0.f), 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(-0.f), 0x80);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.f, -11)), 0x00);  // a quarter step: to zero
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.f, -10)), 0x00);  // half a step: ties to even (0)
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(3.f, -10)), 0x02);  // 1.5 steps: ties to even (2)
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
}

TEST(Fp8E4M3, RandomValuesEncodeToTheNearestCode) {
  const uint64_t seed = sr::testing::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> exponent(-14.0, 10.0);
  std::uniform_int_distribution<int> sign(0, 1);
  for (int i = 0; i < 20000; ++i) {
    const float x = static_cast<float>((sign(rng) ? -1.0 : 1.0) * std::exp2(exponent(rng)));
    ASSERT_EQ(float_to_fp8_e4m3(x), model_encode(x)) << "x = " << x;
    // The documented error model: half an ulp of 3 mantissa bits in the normal range, half a
    // subnormal step below it.
    const double back = fp8_e4m3_to_float(float_to_fp8_e4m3(x));
    const double a = std::fabs(static_cast<double>(x));
    if (a <= 448.0) {
      const double allowed = a >= std::ldexp(1.0, -6) ? a * std::ldexp(1.0, -4) : std::ldexp(1.0, -10);
      ASSERT_LE(std::fabs(back - x), allowed) << "x = " << x;
    }
  }
}

}  // namespace
}  // namespace sr
