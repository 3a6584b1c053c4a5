// certified_gram_lambda_max (spectral_bound.h) against the largest eigenvalue of the exact Gram
// matrix of the stored f32 rows, found by cyclic Jacobi rotations in long double: the bound is
// never below it, on Gaussian, rank-one, shared-mean, tiny and huge rows and on real attention
// values, and sits within a few 1e-3 of it where the spectrum has a gap.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "exact_eigen.h"
#include "realattn.h"
#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/spectral_bound.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

struct Case {
  const char* name;
  int64_t n;
  int32_t d;
  double tightness;  // the bound may exceed the exact value by this factor (0: not checked)
};

std::vector<float> make_rows(const std::string& kind, int64_t n, int32_t d, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> rows(static_cast<size_t>(n) * d);
  std::vector<float> common(d);
  for (float& c : common) c = normal(rng);
  for (int64_t t = 0; t < n; ++t) {
    const float weight = normal(rng);
    for (int32_t i = 0; i < d; ++i) {
      float& x = rows[t * d + i];
      if (kind == "rank one") x = weight * common[i];
      else if (kind == "shared mean") x = common[i] + 0.05f * normal(rng);
      else if (kind == "tiny") x = 1e-20f * normal(rng);
      else if (kind == "huge") x = 1e18f * normal(rng);
      else x = normal(rng);
    }
  }
  return rows;
}

TEST(SpectralBound, NeverBelowTheExactLargestEigenvalue) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Case cases[] = {{"gaussian", 1, 16, 0}, {"gaussian", 2, 16, 0},      {"gaussian", 16, 64, 0},
                        {"gaussian", 256, 32, 0}, {"gaussian", 64, 128, 0}, {"rank one", 16, 64, 2e-3},
                        {"shared mean", 64, 64, 2e-3}, {"shared mean", 1024, 32, 2e-3}, {"tiny", 32, 32, 0},
                        {"huge", 32, 32, 0}};
  for (const Case& c : cases) {
    for (int repeat = 0; repeat < 3; ++repeat) {
      SCOPED_TRACE(std::string(c.name) + " n " + std::to_string(c.n) + " d " + std::to_string(c.d));
      const std::vector<float> rows = make_rows(c.name, c.n, c.d, rng);
      const long double exact = exact_lambda_max(rows, c.n, c.d);
      const double bound = certified_gram_lambda_max(rows.data(), c.n, c.d, c.d);
      ASSERT_GE(static_cast<long double>(bound), exact) << "the bound is below lambda_max";
      double trace = 0.0;
      for (float x : rows) trace += static_cast<double>(x) * x;
      EXPECT_LE(bound, trace * (1 + 1e-12)) << "looser than the trace";
      if (c.tightness > 0) EXPECT_LE(static_cast<long double>(bound), exact * (1 + c.tightness));
    }
  }
}

// Near-degenerate Gram matrices, where power iteration converges slowly or not at all: two
// orthogonal directions of almost equal energy (eigenvalues 1% apart: after 60 steps the
// estimate still sits about 0.2% low, more than the first margin, so only the Cholesky check
// keeps the bound above; and 2e-7 apart), every direction alike (rows of a scaled identity:
// all eigenvalues equal), and a cluster of close eigenvalues.
TEST(SpectralBound, NearDegenerateGramMatrices) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (int32_t d : {16, 64, 128}) {
    for (int64_t n : {int64_t{8}, int64_t{d}, int64_t{4 * d}}) {
      SCOPED_TRACE("d " + std::to_string(d) + " n " + std::to_string(n));
      std::vector<float> two(static_cast<size_t>(n) * d, 0.f), twin(two.size(), 0.f), identity(two.size(), 0.f),
          cluster(two.size(), 0.f);
      for (int64_t t = 0; t < n; ++t) {
        // Rows alternate between the first two axes, the second a little (or a hair) larger.
        two[t * d + (t % 2)] = t % 2 ? 1.005f : 1.f;
        twin[t * d + (t % 2)] = t % 2 ? 1.0000001f : 1.f;
        identity[t * d + (t % d)] = 3.f;
        for (int32_t i = 0; i < 4 && i < d; ++i) cluster[t * d + i] = static_cast<float>((1.0 + 1e-4 * i) * normal(rng));
      }
      for (const std::vector<float>* rows : {&two, &twin, &identity, &cluster}) {
        const long double exact = exact_lambda_max(*rows, n, d);
        const double bound = certified_gram_lambda_max(rows->data(), n, d, d);
        double trace = 0.0;
        for (float x : *rows) trace += static_cast<double>(x) * x;
        EXPECT_GE(static_cast<long double>(bound), exact) << "the bound is below lambda_max";
        EXPECT_LE(bound, trace * (1 + 1e-12)) << "looser than the trace";
      }
    }
  }
}

TEST(SpectralBound, EmptyZeroAndNonFiniteRows) {
  std::vector<float> rows(64 * 8, 0.f);
  EXPECT_EQ(certified_gram_lambda_max(rows.data(), 0, 8, 8), 0.0);
  EXPECT_EQ(certified_gram_lambda_max(rows.data(), 64, 8, 8), 0.0);
  rows[17] = NAN;
  EXPECT_EQ(certified_gram_lambda_max(rows.data(), 64, 8, 8), INFINITY);
  rows[17] = INFINITY;
  EXPECT_EQ(certified_gram_lambda_max(rows.data(), 64, 8, 8), INFINITY);
}

// Real attention's values, one page of 16 tokens and one node of 256 of a kv-head per layer.
TEST(SpectralBound, RealAttentionValuesStayAboveTheExactValue) {
  const std::string dir = workloads::find_realattn_dir();
  if (dir.empty()) GTEST_SKIP() << "no realattn data";
  using workloads::RealAttnLayer;
  for (int32_t layer = 0; layer < 8; layer += 3) {
    RealAttnLayer data = workloads::load_realattn_layer(dir, layer);
    for (int64_t tokens : {16, 256}) {
      std::vector<float> rows(static_cast<size_t>(tokens) * RealAttnLayer::kHeadDim);
      const int64_t first = 1000;
      for (size_t i = 0; i < rows.size(); ++i) rows[i] = bf16_to_float(data.v[first * RealAttnLayer::kHeadDim + i]);
      const long double exact = exact_lambda_max(rows, tokens, RealAttnLayer::kHeadDim);
      const double bound = certified_gram_lambda_max(rows.data(), tokens, RealAttnLayer::kHeadDim, RealAttnLayer::kHeadDim);
      EXPECT_GE(static_cast<long double>(bound), exact) << "layer " << layer << " tokens " << tokens;
      EXPECT_LE(static_cast<long double>(bound), exact * 1.05L) << "layer " << layer << " tokens " << tokens;
    }
  }
}

}  // namespace
}  // namespace sr::testing
