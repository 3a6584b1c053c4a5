// The CPU split kernel is one source compiled per instruction set (src/CMakeLists.txt); a
// machine runs only the best one it has, so the suite would never run the others. Here every
// build this CPU can execute runs the same splits, and each must agree with the generic build
// (plain C++, no F16C: its FP8 widening is the scalar conversion, not the f16 bit trick).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/split_kernel.h"
#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/fp8_rows.h"

namespace sr::cpu {
namespace {

struct Built {
  const char* name;
  SplitKernel kernel;
};

std::vector<Built> runnable_builds() {
  std::vector<Built> builds;
#if defined(SR_CPU_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) builds.push_back({"avx2", avx2::run_split});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    builds.push_back({"avx512", avx512::run_split});
  }
#endif
  return builds;
}

// One kv-head's pages, stored in `dtype` from Gaussian rows with uneven magnitudes.
struct Layer {
  std::vector<unsigned char> k, v;
  std::vector<float> k_scale, v_scale, vnorm;
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
    view = LayerView{k.data(), v.data(), vnorm.data(),
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
        for (const Built& build : builds) {
          const Result got = run(build.kernel, layer, q, group, tokens);
          for (int32_t h = 0; h < group; ++h) {
            // Same maximum logit and sum up to f32 reassociation.
            EXPECT_NEAR(got.partial[h].m, expected.partial[h].m, 1e-4 * (1 + std::fabs(expected.partial[h].m)))
                << build.name;
            EXPECT_NEAR(got.partial[h].l, expected.partial[h].l, 1e-4 * expected.partial[h].l) << build.name;
            double diff = 0, norm = 0;
            for (int32_t d = 0; d < head_dim; ++d) {
              const double e = expected.o[h * head_dim + d], g = got.o[h * head_dim + d];
              diff += (g - e) * (g - e);
              norm += e * e;
            }
            EXPECT_LE(std::sqrt(diff), 1e-5 * std::sqrt(norm)) << build.name << " head " << h;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace sr::cpu
