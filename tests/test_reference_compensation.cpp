// The compensated bound (reference_compensation.h, docs/ARCHITECTURE.md 5.3) against the true
// error of skipping pages and adding their mass times the reference, in long double. The
// centred summaries are computed as the storages compute them (the rows minus the reference in
// f32, certified lambda raised by kCentringSlack, the largest centred norm from the exact
// differences), and the tree-min bound over them must cover ||sum p_j (v_j - c)|| for every skip
// set: on values sharing a mean (the case compensation is for), with references off the mean
// (where f32 centring rounds the most), on Gaussian values and on rows spanning many binades.
// Where values share a mean, the centred bound is far below the plain one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

constexpr int kPage = 16;

// Per page the largest row norm and sigma, per node lambda, of `rows` ([pages * kPage][d]), as
// the storage keeps them; with a reference, of the rows minus it (f32) with its slack.
struct Summaries {
  std::vector<float> max_norm, sigma;
  std::vector<std::vector<float>> lambda;  // [level][node]

  Summaries(const std::vector<float>& rows, int64_t pages, int32_t d, const float* reference) {
    std::vector<float> x(rows);
    if (reference) {
      for (size_t i = 0; i < x.size(); ++i) x[i] = rows[i] - reference[i % d];
    }
    const double slack = reference ? kCentringSlack : 1.0;
    for (int64_t b = 0; b < pages; ++b) {
      double largest = 0.0;
      for (int r = 0; r < kPage; ++r) {
        double n2 = 0.0;
        for (int32_t i = 0; i < d; ++i) {
          const double e = static_cast<double>(rows[(b * kPage + r) * d + i]) - (reference ? reference[i] : 0.f);
          n2 += e * e;
        }
        largest = std::max(largest, static_cast<double>(summary_row_norm(n2)));
      }
      max_norm.push_back(static_cast<float>(largest));
      sigma.push_back(f32_at_least(std::sqrt(certified_gram_lambda_max(x.data() + b * kPage * d, kPage, d, d)) * slack));
    }
    lambda.resize(kTreeLevels + 1);
    for (int level = 1; level <= kTreeLevels; ++level) {
      const int64_t span = int64_t{1} << (2 * level);
      for (int64_t node = 0; (node + 1) * span <= pages; ++node) {
        const double l = certified_gram_lambda_max(x.data() + node * span * kPage * d, span * kPage, d, d);
        lambda[level].push_back(f32_at_least(l * slack * slack));
      }
    }
  }

  // The tree-min bound of the skipped pages for weights p (one per row).
  float bound(const std::vector<bool>& skip, const std::vector<double>& p) const {
    const int64_t pages = static_cast<int64_t>(skip.size());
    auto page = [&](int64_t b) {
      if (!skip[b]) return TreePage{};
      double mass = 0.0, p2 = 0.0;
      for (int r = 0; r < kPage; ++r) {
        mass += p[b * kPage + r];
        p2 += p[b * kPage + r] * p[b * kPage + r];
      }
      return TreePage{f32_at_least(mass), f32_at_least(p2), max_norm[b], sigma[b]};
    };
    auto node_lambda = [&](int level, int64_t node) {
      return node < static_cast<int64_t>(lambda[level].size()) ? lambda[level][node] : INFINITY;
    };
    return tree_min_bound(0, pages, page, node_lambda);
  }
};

// ||sum over skipped rows of p_j (v_j - c)|| in long double (c = 0: the plain error).
long double true_error(const std::vector<float>& rows, int32_t d, const std::vector<bool>& skip,
                       const std::vector<double>& p, const float* reference) {
  std::vector<long double> e(d, 0.0L);
  for (size_t b = 0; b < skip.size(); ++b) {
    if (!skip[b]) continue;
    for (int r = 0; r < kPage; ++r) {
      const int64_t t = static_cast<int64_t>(b) * kPage + r;
      for (int32_t i = 0; i < d; ++i) {
        e[i] += static_cast<long double>(p[t]) *
                (static_cast<long double>(rows[t * d + i]) - (reference ? static_cast<long double>(reference[i]) : 0.0L));
      }
    }
  }
  long double n2 = 0.0L;
  for (long double x : e) n2 += x * x;
  return std::sqrt(n2);
}

TEST(ReferenceCompensation, CentredTreeBoundsTheCompensatedError) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  constexpr int32_t d = 64;
  constexpr int64_t pages = 64;  // nodes of 4, 16 and 64 pages
  struct Case {
    const char* name;
    double mean_scale, noise_scale, reference_shift;  // reference = mean * (1 + shift)
    bool binades;                                     // row sizes spread over 2^-20 .. 2^20
  };
  const Case cases[] = {{"shared mean", 10.0, 1.0, 0.0, false},        {"tight mean", 1000.0, 1e-3, 0.0, false},
                        {"reference off the mean", 10.0, 1.0, 0.7, false}, {"opposite reference", 10.0, 1.0, -2.3, false},
                        {"gaussian", 0.0, 1.0, 0.0, false},               {"binades", 1.0, 1.0, 0.0, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<double> mean(d);
    for (double& x : mean) x = c.mean_scale * normal(rng);
    std::vector<float> rows(static_cast<size_t>(pages) * kPage * d);
    for (int64_t t = 0; t < pages * kPage; ++t) {
      const double size = c.binades ? std::exp2(std::floor(40.0 * uniform(rng)) - 20.0) : 1.0;
      for (int32_t i = 0; i < d; ++i) rows[t * d + i] = static_cast<float>(size * (mean[i] + c.noise_scale * normal(rng)));
    }
    // The reference as the storage freezes it (the f32 mean of the rows), moved off it by the shift.
    std::vector<float> reference(d);
    for (int32_t i = 0; i < d; ++i) {
      double sum = 0.0;
      for (int64_t t = 0; t < pages * kPage; ++t) sum += rows[t * d + i];
      reference[i] = static_cast<float>(sum / (pages * kPage) * (1.0 + c.reference_shift));
    }
    const Summaries plain(rows, pages, d, nullptr), centred(rows, pages, d, reference.data());
    double tightest = INFINITY;
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<double> p(static_cast<size_t>(pages) * kPage);
      const double spread = trial % 4 == 0 ? 0.0 : 8.0;  // uniform weights, or spread over e^8
      for (double& w : p) w = std::exp(spread * (uniform(rng) - 1.0));
      std::vector<bool> skip(pages);
      const double keep = uniform(rng);
      for (int64_t b = 0; b < pages; ++b) skip[b] = uniform(rng) > keep;
      const long double truth = true_error(rows, d, skip, p, reference.data());
      const float bound = centred.bound(skip, p);
      // (The tree's own sums run in f32, as the runtime's: 1e-5 of rounding, as in test_tree_min_bound.)
      EXPECT_GE(static_cast<long double>(bound) * (1 + 1e-5L), truth) << "trial " << trial;
      const long double plain_truth = true_error(rows, d, skip, p, nullptr);
      EXPECT_GE(static_cast<long double>(plain.bound(skip, p)) * (1 + 1e-5L), plain_truth) << "trial " << trial;
      if (plain_truth > 0) tightest = std::min(tightest, static_cast<double>(bound / plain.bound(skip, p)));
    }
    // Values sharing a mean ten times their spread: the centred bound is a small part of the plain one.
    if (c.mean_scale >= 10.0 && c.reference_shift == 0.0) EXPECT_LT(tightest, 0.2);
  }
}

}  // namespace
}  // namespace sr::testing
