// The CPU split kernel is one source compiled per instruction set (src/CMakeLists.txt); a
// machine runs only the best one it has, so the suite would never run the others. Here every
// build this CPU can execute runs the same splits, and each must agree with the generic build
// (plain C++, no F16C: its FP8 widening is the scalar conversion, not the f16 bit trick).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/split_kernel.h"
#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/fp8_rows.h"
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

Result run(SplitKernel kernel, const Layer& layer, const std::vector<float>& q, int32_t group, int64_t tokens) {
  RoutingConfig dense{};
  dense.mode = SR_ROUTING_OFF;
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
  kernel(layer.view, dense, task);
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

}  // namespace
}  // namespace sr::cpu
