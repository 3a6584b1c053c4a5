// tree_min_bound (tree_min_bound.h) against the true error of skipping whole pages of value
// rows, in float64: never below it, never above today's sum of P_B M_B, and well below that sum
// where values point in many directions. Summaries are certified (certified_gram_lambda_max,
// rounded up to f32) as the runtime would keep them. Data: Gaussian, shared-mean, rank-one and
// sink-structured values (the benchmark's generator, with its own query's weights); skip sets
// random, greedy by smallest page mass, and split into ranges whose bounds are summed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "synthetic_context.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

constexpr int kPage = 16;

// The summaries of `pages` pages of value rows (kPage rows of d each) and their weights.
struct Context {
  int32_t d;
  int64_t pages;
  std::vector<float> v;   // [pages * kPage][d]
  std::vector<double> p;  // weights, one per row
  std::vector<float> max_norm, sigma;
  std::vector<std::vector<float>> lambda;  // [level][node], level 1 .. kTreeLevels

  Context(int32_t head_dim, int64_t page_count, std::vector<float> values, std::vector<double> weights)
      : d(head_dim), pages(page_count), v(std::move(values)), p(std::move(weights)) {
    max_norm.resize(pages);
    sigma.resize(pages);
    for (int64_t b = 0; b < pages; ++b) {
      double m = 0;
      for (int r = 0; r < kPage; ++r) {
        double n2 = 0;
        for (int32_t i = 0; i < d; ++i) n2 += static_cast<double>(row(b * kPage + r)[i]) * row(b * kPage + r)[i];
        m = std::max(m, std::sqrt(n2));
      }
      max_norm[b] = f32_at_least(m);
      sigma[b] = f32_at_least(std::sqrt(certified_gram_lambda_max(row(b * kPage), kPage, d, d)));
    }
    lambda.resize(kTreeLevels + 1);
    for (int level = 1; level <= kTreeLevels; ++level) {
      const int64_t span = int64_t{1} << (2 * level);
      for (int64_t node = 0; node * span < pages; ++node) {
        const int64_t rows = std::min(span, pages - node * span) * kPage;
        lambda[level].push_back(f32_at_least(certified_gram_lambda_max(row(node * span * kPage), rows, d, d)));
      }
    }
  }
  const float* row(int64_t t) const { return v.data() + t * d; }

  // The bound over pages [first, end) for the skip mask (whole pages), and its L1 counterpart.
  float tree(const std::vector<bool>& skip, int64_t first, int64_t end) const {
    auto page = [&](int64_t b) {
      TreePage pg{0.f, 0.f, max_norm[b], sigma[b]};
      if (skip[b]) {
        double mass = 0, p2 = 0;
        for (int r = 0; r < kPage; ++r) {
          mass += p[b * kPage + r];
          p2 += p[b * kPage + r] * p[b * kPage + r];
        }
        pg.skipped_mass = static_cast<float>(mass);
        pg.skipped_p2 = static_cast<float>(p2);
      }
      return pg;
    };
    auto node_lambda = [&](int level, int64_t node) { return lambda[level][node]; };
    return tree_min_bound(first, end, page, node_lambda);
  }
  double l1(const std::vector<bool>& skip) const {
    double sum = 0;
    for (int64_t b = 0; b < pages; ++b) {
      if (!skip[b]) continue;
      double mass = 0;
      for (int r = 0; r < kPage; ++r) mass += p[b * kPage + r];
      sum += mass * max_norm[b];
    }
    return sum;
  }
  double true_error(const std::vector<bool>& skip) const {
    std::vector<double> e(d, 0.0);
    for (int64_t b = 0; b < pages; ++b) {
      if (!skip[b]) continue;
      for (int r = 0; r < kPage; ++r) {
        for (int32_t i = 0; i < d; ++i) e[i] += p[b * kPage + r] * row(b * kPage + r)[i];
      }
    }
    double n2 = 0;
    for (double x : e) n2 += x * x;
    return std::sqrt(n2);
  }
};

// Weights exp(s - max s) of logits s.
std::vector<double> softmax_weights(const std::vector<double>& s) {
  const double m = *std::max_element(s.begin(), s.end());
  std::vector<double> p(s.size());
  for (size_t i = 0; i < s.size(); ++i) p[i] = std::exp(s[i] - m);
  return p;
}

enum class Values { Gaussian, SharedMean, RankOne };

Context make_context(Values kind, int32_t d, int64_t pages, double logit_spread, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  const int64_t n = pages * kPage;
  std::vector<float> v(static_cast<size_t>(n) * d);
  std::vector<double> mean(d), dir(d);
  for (int32_t i = 0; i < d; ++i) {
    mean[i] = normal(rng);
    dir[i] = normal(rng);
  }
  for (int64_t t = 0; t < n; ++t) {
    const double a = normal(rng);
    for (int32_t i = 0; i < d; ++i) {
      const double x = kind == Values::Gaussian ? normal(rng) : kind == Values::SharedMean ? mean[i] + 0.3 * normal(rng) : a * dir[i];
      v[t * d + i] = static_cast<float>(x);
    }
  }
  std::vector<double> s(n);
  for (int64_t t = 0; t < n; ++t) s[t] = logit_spread * normal(rng);
  for (int t = 0; t < 4 && t < n; ++t) s[t] += 8.0;  // sinks
  return Context(d, pages, std::move(v), softmax_weights(s));
}

// The skip sets a test walks: random pages, and the greedy order budget mode uses (smallest
// page mass first, the first page kept) at several depths.
std::vector<std::vector<bool>> skip_sets(const Context& c, std::mt19937_64& rng) {
  std::vector<std::vector<bool>> sets;
  std::bernoulli_distribution coin(0.6);
  for (int k = 0; k < 4; ++k) {
    std::vector<bool> skip(c.pages);
    for (int64_t b = 1; b < c.pages; ++b) skip[b] = coin(rng);
    sets.push_back(skip);
  }
  std::vector<std::pair<double, int64_t>> order;
  for (int64_t b = 1; b < c.pages; ++b) {
    double mass = 0;
    for (int r = 0; r < kPage; ++r) mass += c.p[b * kPage + r];
    order.push_back({mass, b});
  }
  std::sort(order.begin(), order.end());
  for (double depth : {0.1, 0.5, 0.9, 1.0}) {
    std::vector<bool> skip(c.pages);
    for (size_t r = 0; r < static_cast<size_t>(depth * order.size()); ++r) skip[order[r].second] = true;
    sets.push_back(skip);
  }
  return sets;
}

void expect_valid(const Context& c, const std::vector<bool>& skip, const std::string& what) {
  const double truth = c.true_error(skip), l1 = c.l1(skip);
  const float tree = c.tree(skip, 0, c.pages);
  // f32 sums and square roots: a few ulps of the bound itself.
  EXPECT_GE(static_cast<double>(tree) * (1 + 1e-5), truth) << what << ": the bound is below the true error";
  EXPECT_LE(static_cast<double>(tree), l1 * (1 + 1e-5)) << what << ": the bound is above today's";
}

TEST(TreeMinBound, NeverBelowTheTrueErrorNorAboveTheSumOfNorms) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (Values kind : {Values::Gaussian, Values::SharedMean, Values::RankOne}) {
    for (int64_t pages : {1, 3, 4, 17, 64, 300}) {
      for (double spread : {0.5, 2.0}) {
        const Context c = make_context(kind, 64, pages, spread, rng);
        int k = 0;
        for (const auto& skip : skip_sets(c, rng)) {
          expect_valid(c, skip, "kind " + std::to_string(static_cast<int>(kind)) + " pages " + std::to_string(pages) +
                                    " spread " + std::to_string(spread) + " set " + std::to_string(k++));
        }
      }
    }
  }
}

// Values of random directions cancel: the bound must see it (the spectral terms), where the sum
// of norms cannot. With near-uniform weights over 4096 rows of 64 dims the truth is about
// sqrt(n) times below the sum of norms; the root node's term sits about sqrt(n / d) + 1 above it.
TEST(TreeMinBound, FarBelowTheSumOfNormsForValuesOfRandomDirections) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Context c = make_context(Values::Gaussian, 64, 256, 0.1, rng);
  std::vector<bool> skip(c.pages, true);
  skip[0] = false;
  const double l1 = c.l1(skip), tree = c.tree(skip, 0, c.pages), truth = c.true_error(skip);
  std::printf("[tree-min] Gaussian 4096 x 64: sum of norms %.3g, tree-min %.3g, true %.3g\n", l1, tree, truth);
  EXPECT_LT(tree * 4, l1);
  EXPECT_LT(tree, truth * 40);
}

// A step splits the sequence and sums each split's tree, nodes cut at the splits' ends: still a
// bound on the whole skipped error (triangle inequality), and no tighter than the uncut tree
// plus rounding.
TEST(TreeMinBound, SplitsSumToABoundOfTheWhole) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (Values kind : {Values::Gaussian, Values::SharedMean}) {
    const Context c = make_context(kind, 64, 200, 1.0, rng);
    std::uniform_int_distribution<int64_t> cut(1, c.pages - 1);
    for (const auto& skip : skip_sets(c, rng)) {
      std::vector<int64_t> ends = {0, c.pages};
      for (int k = 0; k < 5; ++k) ends.push_back(cut(rng));
      std::sort(ends.begin(), ends.end());
      double sum = 0;
      for (size_t k = 0; k + 1 < ends.size(); ++k) sum += c.tree(skip, ends[k], ends[k + 1]);
      EXPECT_GE(sum * (1 + 1e-5), c.true_error(skip));
      EXPECT_GE(sum * (1 + 1e-5), c.tree(skip, 0, c.pages));
    }
  }
}

// The benchmark's sink-structured contexts with their own query: every kv-head, weights of the
// group's first q-head.
TEST(TreeMinBound, SinkStructuredContexts) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (bool sink_heavy : {true, false}) {
    workloads::ContextSpec spec = sink_heavy ? workloads::sink_heavy_spec(4096, seed) : workloads::mixed_spec(4096, seed);
    spec.head_dim = 64;
    workloads::SyntheticContext generator(spec);
    const int64_t n = spec.length;
    const size_t row = static_cast<size_t>(spec.kv_heads) * spec.head_dim;
    std::vector<float> k(n * row), v(n * row);
    generator.tokens(0, n, k.data(), v.data());
    const std::vector<float> q = generator.query();
    for (int32_t kv = 0; kv < spec.kv_heads; ++kv) {
      std::vector<float> values(static_cast<size_t>(n) * spec.head_dim);
      std::vector<double> s(n);
      const float* qh = q.data() + static_cast<size_t>(kv) * spec.group * spec.head_dim;
      for (int64_t t = 0; t < n; ++t) {
        double dot = 0;
        for (int32_t i = 0; i < spec.head_dim; ++i) {
          values[t * spec.head_dim + i] = v[t * row + kv * spec.head_dim + i];
          dot += static_cast<double>(qh[i]) * k[t * row + kv * spec.head_dim + i];
        }
        s[t] = dot / std::sqrt(static_cast<double>(spec.head_dim));
      }
      const Context c(spec.head_dim, n / kPage, std::move(values), softmax_weights(s));
      int set = 0;
      for (const auto& skip : skip_sets(c, rng)) {
        expect_valid(c, skip, std::string(sink_heavy ? "sink-heavy" : "mixed") + " kv-head " + std::to_string(kv) +
                                  " set " + std::to_string(set++));
      }
    }
  }
}

// Pages without a spectral summary (sigma +inf) and nodes not yet closed (lambda +inf) fall back
// to the sum of norms, exactly.
TEST(TreeMinBound, MissingSummariesFallBackToTheSumOfNorms) {
  std::vector<TreePage> pages(37);
  double l1 = 0;
  for (size_t b = 0; b < pages.size(); ++b) {
    pages[b] = TreePage{0.25f * static_cast<float>(b % 5), 0.01f, 2.f + static_cast<float>(b % 3), INFINITY};
    l1 += static_cast<double>(pages[b].skipped_mass) * pages[b].max_norm;
  }
  const float tree = tree_min_bound(0, static_cast<int64_t>(pages.size()), [&](int64_t b) { return pages[b]; },
                                    [](int, int64_t) { return INFINITY; });
  EXPECT_NEAR(tree, l1, 1e-5 * l1);
  EXPECT_EQ(tree_min_bound(5, 5, [&](int64_t b) { return pages[b]; }, [](int, int64_t) { return 1.f; }), 0.f);
}

}  // namespace
}  // namespace sr::testing
