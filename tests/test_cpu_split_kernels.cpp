// The CPU split kernel is one source compiled per instruction set (src/CMakeLists.txt); a
// machine runs only the best one it has, so the suite would never run the others. Here every
// build this CPU can execute runs the same splits, and each must agree with the generic build
// (plain C++, no F16C: its FP8 widening is the scalar conversion, not the f16 bit trick).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/split_kernel.h"
#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/fp8_rows.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"

namespace sr::cpu {
namespace {

// Every build this CPU runs but the generic one (the library's own list, split_kernel_select.cpp).
std::vector<KernelBuild> runnable_builds() {
  KernelBuild all[kMaxKernelBuilds];
  const int n = runnable_split_kernels(all, kMaxKernelBuilds);
  std::vector<KernelBuild> builds;
  for (int i = 0; i < n && i < kMaxKernelBuilds; ++i) {
    if (std::string(all[i].isa) != "generic") builds.push_back(all[i]);
  }
  return builds;
}

// One kv-head's pages, stored in `dtype` from Gaussian rows with uneven magnitudes.
struct Layer {
  std::vector<unsigned char> k, v;
  std::vector<float> k_scale, v_scale, vnorm, vspectral;
  std::vector<int32_t> pages;
  LayerView view{};
  Layer(sr_dtype dtype, int32_t head_dim, int32_t page_tokens, int64_t tokens, std::mt19937_64& rng) {
    const int64_t n_pages = tokens / page_tokens, rows = n_pages * page_tokens;
    const size_t bytes = dtype_element_bytes(dtype);
    k.resize(rows * head_dim * bytes);
    v.resize(k.size());
    k_scale.resize(rows);
    v_scale.resize(rows);
    vnorm.assign(n_pages, 0.f);
    vspectral.assign(n_pages * kSpectralSlots, INFINITY);  // no spectral summaries: the L1 bound
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> row(head_dim);
    for (int which = 0; which < 2; ++which) {
      unsigned char* dst = which ? v.data() : k.data();
      float* scales = which ? v_scale.data() : k_scale.data();
      for (int64_t r = 0; r < rows; ++r) {
        const float magnitude = std::exp(0.5f * normal(rng));
        for (float& x : row) x = magnitude * normal(rng);
        if (dtype == SR_DTYPE_FP8_E4M3) {
          float amax = 0.f;
          for (float x : row) amax = fp8_amax_step(amax, x);
          scales[r] = fp8_row_scale(amax);
          for (int32_t d = 0; d < head_dim; ++d) dst[r * head_dim + d] = fp8_encode(row[d], scales[r]);
        } else {
          for (int32_t d = 0; d < head_dim; ++d) {
            const int64_t i = r * head_dim + d;
            if (dtype == SR_DTYPE_F32) std::memcpy(dst + 4 * i, &row[d], 4);
            uint16_t h = dtype == SR_DTYPE_F16 ? float_to_f16(row[d]) : float_to_bf16(row[d]);
            if (dtype != SR_DTYPE_F32) std::memcpy(dst + 2 * i, &h, 2);
          }
        }
      }
    }
    for (int64_t p = 0; p < n_pages; ++p) pages.push_back(static_cast<int32_t>(n_pages - 1 - p));  // reversed
    view = LayerView{k.data(), v.data(), vnorm.data(), vspectral.data(),
                     dtype == SR_DTYPE_FP8_E4M3 ? k_scale.data() : nullptr,
                     dtype == SR_DTYPE_FP8_E4M3 ? v_scale.data() : nullptr,
                     1, head_dim, page_tokens, dtype};
  }
};

struct Result {
  std::vector<SoftmaxPartial> partial;
  std::vector<float> o;
};

Result run(SplitKernel kernel, const Layer& layer, const std::vector<float>& q, int32_t group, int64_t tokens,
           RoutingConfig routing = RoutingConfig{}, int64_t* skipped = nullptr) {
  Result r;
  r.partial.resize(group);
  r.o.assign(static_cast<size_t>(group) * layer.view.head_dim, NAN);
  SplitTask task{};
  task.pages = layer.pages.data();
  task.length = tokens;
  task.kv_head = 0;
  task.begin = 0;
  task.end = tokens;
  task.q = q.data();
  task.group = group;
  task.partial = r.partial.data();
  task.o = r.o.data();
  task.visible = VisibleTokens{0, 0};
  task.first_row = 0;
  kernel(layer.view, routing, task);
  if (skipped) *skipped = task.blocks_skipped;
  return r;
}

// Of a bf16 layer and one head's q: the largest sum_i |q_i k_ti| over its rows, and the largest
// V-row norm.
struct Extent {
  double logit_terms = 0, v_norm = 0;
};
Extent extent_of(const Layer& layer, const float* q) {
  const int32_t D = layer.view.head_dim;
  const int64_t rows = static_cast<int64_t>(layer.k.size() / 2 / D);
  auto element = [&](const std::vector<unsigned char>& bytes, int64_t i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return static_cast<double>(bf16_to_float(h));
  };
  Extent e;
  for (int64_t r = 0; r < rows; ++r) {
    double terms = 0, v2 = 0;
    for (int32_t d = 0; d < D; ++d) {
      terms += std::fabs(q[d] * element(layer.k, r * D + d));
      v2 += element(layer.v, r * D + d) * element(layer.v, r * D + d);
    }
    e.logit_terms = std::max(e.logit_terms, terms);
    e.v_norm = std::max(e.v_norm, std::sqrt(v2));
  }
  return e;
}

TEST(CpuSplitKernels, EveryInstructionSetAgreesWithTheGenericBuild) {
  const auto builds = runnable_builds();
  if (builds.empty()) GTEST_SKIP() << "this CPU runs only the generic build";
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t tokens = 1024;
  for (sr_dtype dtype : {SR_DTYPE_F32, SR_DTYPE_F16, SR_DTYPE_BF16, SR_DTYPE_FP8_E4M3}) {
    for (int32_t head_dim : {64, 128, 256}) {
      for (int32_t group : {1, 4, 7}) {
        SCOPED_TRACE("dtype " + std::to_string(dtype) + " head_dim " + std::to_string(head_dim) + " group " +
                     std::to_string(group));
        Layer layer(dtype, head_dim, 16, tokens, rng);
        std::normal_distribution<float> normal(0.f, 0.1f);
        std::vector<float> q(static_cast<size_t>(group) * head_dim);
        for (float& x : q) x = normal(rng);
        const Result expected = run(generic::run_split, layer, q, group, tokens);
        for (const KernelBuild& build : builds) {
          const Result got = run(build.kernel, layer, q, group, tokens);
          const bool split_query = dtype == SR_DTYPE_BF16 && std::string(build.isa) == "avx512bf16";
          for (int32_t h = 0; h < group; ++h) {
            // Same maximum logit and sum up to f32 reassociation. The bf16 dot product scores
            // with q split in two bf16 halves: each logit may move by up to
            // delta = 2^-16 max_t sum_i |q_i k_ti| (split_kernel.cpp, Query), so m by delta,
            // every weight exp(s_t - m) by a factor within e^(+-2 delta), l by that factor and
            // o = sum_t w_t v_t by at most (e^(2 delta) - 1) l max_t |v_t|.
            const Extent extent = split_query ? extent_of(layer, q.data() + h * head_dim) : Extent{};
            const double weight_change = std::expm1(2 * std::ldexp(extent.logit_terms, -16));
            EXPECT_NEAR(got.partial[h].m, expected.partial[h].m,
                        1e-4 * (1 + std::fabs(expected.partial[h].m)) + std::ldexp(extent.logit_terms, -16))
                << build.isa;
            EXPECT_NEAR(got.partial[h].l, expected.partial[h].l, (1e-4 + weight_change) * expected.partial[h].l)
                << build.isa;
            double diff = 0, norm = 0;
            for (int32_t d = 0; d < head_dim; ++d) {
              const double e = expected.o[h * head_dim + d], g = got.o[h * head_dim + d];
              diff += (g - e) * (g - e);
              norm += e * e;
            }
            EXPECT_LE(std::sqrt(diff), 1e-5 * std::sqrt(norm) + weight_change * expected.partial[h].l * extent.v_norm)
                << build.isa << " head " << h;
          }
        }
      }
    }
  }
}


// The split kernel's bound with the storage's spectral summaries (page sigma, node lambda) and
// without (+inf: the sum of P_B M_B): on the same skip set (tau mode) never looser, far tighter
// for values of random directions, and never below the true error; budget mode skips at least
// as much with them and stays within its bound.
TEST(CpuSplitKernels, SpectralSummariesTightenTheBoundAndNeverLoosenIt) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int32_t D = 128, PT = 16, group = 4;
  const int64_t tokens = 4096, n_pages = tokens / PT;
  Layer layer(SR_DTYPE_BF16, D, PT, tokens, rng);
  // The stored V rows in f32 by physical row, and their summaries as the CPU storage keeps them.
  std::vector<float> v(static_cast<size_t>(tokens * D));
  for (int64_t i = 0; i < tokens * D; ++i) {
    uint16_t h;
    std::memcpy(&h, layer.v.data() + 2 * i, 2);
    v[i] = bf16_to_float(h);
  }
  std::vector<float> spectral(static_cast<size_t>(n_pages * kSpectralSlots), INFINITY);
  std::vector<float> node_rows;
  for (int64_t lp = 0; lp < n_pages; ++lp) {
    const int32_t physical = layer.pages[lp];
    double max2 = 0;
    for (int32_t t = 0; t < PT; ++t) {
      double n2 = 0;
      for (int32_t d = 0; d < D; ++d) n2 += static_cast<double>(v[(physical * PT + t) * D + d]) * v[(physical * PT + t) * D + d];
      max2 = std::max(max2, n2);
    }
    layer.vnorm[physical] = summary_row_norm(max2);
    for (int level = 0; level <= kTreeLevels; ++level) {
      if (level > 0 && !page_closes_node(lp, level)) break;
      node_rows.clear();
      for (int64_t p = lp + 1 - (int64_t{1} << (2 * level)); p <= lp; ++p) {
        node_rows.insert(node_rows.end(), v.begin() + layer.pages[p] * PT * D, v.begin() + (layer.pages[p] + 1) * PT * D);
      }
      const double lambda = certified_gram_lambda_max(node_rows.data(), static_cast<int64_t>(node_rows.size() / D), D, D);
      spectral[physical * kSpectralSlots + level] = level == 0 ? f32_at_least(std::sqrt(lambda)) : f32_at_least(lambda);
    }
  }
  // Near-uniform weights for tau mode (most pages skipped at once), spread ones for budget mode
  // (whose pages of small weights can go within the budget).
  std::vector<float> q_flat(static_cast<size_t>(group) * D), q_spread(q_flat.size());
  std::normal_distribution<float> normal(0.f, 1.f);
  for (size_t i = 0; i < q_flat.size(); ++i) {
    const float x = normal(rng);
    q_flat[i] = 0.02f * x;
    q_spread[i] = 0.3f * x;
  }
  // The first four tokens are sinks: their K rows point along the group's summed q, so they
  // hold most of the attention and budget mode (whose allowance scales with the anchors'
  // output) has room to skip.
  std::vector<float> sink_k(D, 0.f);
  double sink_norm2 = 0;
  for (int32_t d = 0; d < D; ++d) {
    for (int32_t h = 0; h < group; ++h) sink_k[d] += q_spread[h * D + d];
    sink_norm2 += static_cast<double>(sink_k[d]) * sink_k[d];
  }
  for (int32_t t = 0; t < 4; ++t) {
    for (int32_t d = 0; d < D; ++d) {
      const uint16_t bits = float_to_bf16(static_cast<float>(14.0 * sink_k[d] / std::sqrt(sink_norm2)));
      std::memcpy(layer.k.data() + 2 * ((layer.pages[0] * PT + t) * D + d), &bits, 2);
    }
  }
  const float vmax = *std::max_element(layer.vnorm.begin(), layer.vnorm.end());
  // ||sum over skipped rows of p v|| (frame m) as dense minus routed, and the f32 rounding of the
  // two sums it subtracts.
  auto check_bound = [&](const Result& dense, const Result& routed, int32_t h) {
    double e2 = 0;
    for (int32_t d = 0; d < D; ++d) {
      const double diff = static_cast<double>(dense.o[h * D + d]) - routed.o[h * D + d];
      e2 += diff * diff;
    }
    const double rounding = 1e-5 * dense.partial[h].l * vmax;
    EXPECT_GE(routed.partial[h].skipped_err * (1 + 1e-4) + rounding, std::sqrt(e2)) << "head " << h;
  };
  RoutingConfig tau{};
  tau.mode = SR_ROUTING_TAU;
  tau.tau = 0.05f;
  tau.sink_tokens = 4;
  tau.window_tokens = 64;
  RoutingConfig budget = tau;
  budget.mode = SR_ROUTING_BUDGET;
  budget.error_budget = 1e-3f;
  const std::vector<float> no_spectral = layer.vspectral;
  auto use = [&](const std::vector<float>& slots) {
    layer.vspectral = slots;
    layer.view.vspectral = layer.vspectral.data();
  };
  std::vector<KernelBuild> builds = runnable_builds();
  builds.push_back(KernelBuild{"generic", generic::run_split});
  for (const KernelBuild& build : builds) {
    SCOPED_TRACE(build.isa);
    const Result dense_flat = run(build.kernel, layer, q_flat, group, tokens);
    const Result dense_spread = run(build.kernel, layer, q_spread, group, tokens);
    int64_t tau_skipped = 0, skipped_l1 = 0, skipped_tree = 0;
    use(no_spectral);
    const Result tau_l1 = run(build.kernel, layer, q_flat, group, tokens, tau);
    const Result budget_l1 = run(build.kernel, layer, q_spread, group, tokens, budget, &skipped_l1);
    use(spectral);
    const Result tau_tree = run(build.kernel, layer, q_flat, group, tokens, tau, &tau_skipped);
    const Result budget_tree = run(build.kernel, layer, q_spread, group, tokens, budget, &skipped_tree);
    use(no_spectral);
    ASSERT_GT(tau_skipped, n_pages / 2) << "tau 0.05 skips most pages of near-uniform weights";
    EXPECT_EQ(tau_l1.o, tau_tree.o) << "the skip set of tau mode does not depend on the summaries";
    EXPECT_GE(skipped_tree, skipped_l1) << "budget mode skips at least as much with the tighter bound";
    EXPECT_GT(skipped_tree, 0);
    for (int32_t h = 0; h < group; ++h) {
      const float l1 = tau_l1.partial[h].skipped_err, tree = tau_tree.partial[h].skipped_err;
      EXPECT_LE(tree, l1 * (1 + 1e-6f)) << "head " << h;
      EXPECT_LT(tree, 0.5f * l1) << "head " << h << ": values of random directions";
      check_bound(dense_flat, tau_tree, h);
      check_bound(dense_spread, budget_tree, h);
      check_bound(dense_spread, budget_l1, h);
    }
    std::printf("[spectral] %s: tau bound %.3g (sum of norms %.3g); budget 1e-3 skips %lld of %lld pages (%lld without)\n",
                build.isa, tau_tree.partial[0].skipped_err, tau_l1.partial[0].skipped_err,
                static_cast<long long>(skipped_tree), static_cast<long long>(n_pages), static_cast<long long>(skipped_l1));
  }
}

}  // namespace
}  // namespace sr::cpu
