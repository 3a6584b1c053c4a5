// The FP8 E4M3 cache on every backend: stored values against the format's element model (NaN,
// Inf, zero and tiny rows included), appends from every buffer dtype, one-token and bulk appends
// alike, fork/copy-on-write/truncate with scales, and the dense output against float64 over the
// unquantized inputs within the bound the format allows (tests/support/fp8_error_bound.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "fp8_error_bound.h"
#include "shared_arithmetic/dtype_convert.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

class Fp8Cache : public ::testing::TestWithParam<sr_backend> {
 protected:
  CacheShape shape(int32_t head_dim = 128, int32_t kv_heads = 2, int32_t page = 16) {
    CacheShape s;
    s.kv_heads = kv_heads;
    s.head_dim = head_dim;
    s.page_tokens = page;
    s.capacity = 1 << 15;
    s.dtype = SR_DTYPE_FP8_E4M3;
    return s;
  }
};

// Per element, with s = row amax / 448: |x_q - x| <= 2^-4 |x| + 2^-10 s (see fp8_error_bound.h),
// plus the f32 rounding of the scale and of the dequantizing product.
void expect_element_model(const float* stored, const float* input, int32_t head_dim, const std::string& what) {
  double amax = 0;
  bool finite = true;
  for (int32_t i = 0; i < head_dim; ++i) {
    finite = finite && std::isfinite(input[i]);
    amax = std::max(amax, std::fabs(static_cast<double>(input[i])));
  }
  if (!finite) {
    for (int32_t i = 0; i < head_dim; ++i) EXPECT_TRUE(std::isnan(stored[i])) << what << " element " << i;
    return;
  }
  if (amax < std::ldexp(1.0, -100)) {
    for (int32_t i = 0; i < head_dim; ++i) EXPECT_EQ(stored[i], 0.f) << what << " element " << i;
    return;
  }
  const double s = amax / 448;
  for (int32_t i = 0; i < head_dim; ++i) {
    const double x = input[i];
    const double allowed = (std::fabs(x) / 16 + s / 1024) * (1 + 1e-6);
    EXPECT_LE(std::fabs(stored[i] - x), allowed) << what << " element " << i << " x " << x << " stored " << stored[i];
  }
}

// Rows that probe the format: ordinary, large, small, one outlier over tiny values (the
// subnormal range), exact multiples of the scale, all zero, below 2^-100, NaN, +-Inf.
std::vector<float> probe_rows(std::mt19937_64& rng, int32_t head_dim, int32_t* rows_out) {
  const int32_t rows = 10;
  std::vector<float> x(static_cast<size_t>(rows) * head_dim);
  auto row = [&](int r) { return x.data() + static_cast<size_t>(r) * head_dim; };
  auto g = gaussian(rng, x.size());
  std::copy(g.begin(), g.end(), x.begin());
  for (int32_t i = 0; i < head_dim; ++i) {
    row(1)[i] *= 3e4f;
    row(2)[i] *= 1e-20f;
    row(3)[i] *= 1e-4f;
    row(4)[i] = static_cast<float>(static_cast<int>(i % 9) - 4) * 0.125f;
    row(5)[i] = 0.f;
    row(6)[i] *= 1e-32f;
  }
  row(3)[head_dim / 2] = 50.f;
  row(7)[3] = std::numeric_limits<float>::quiet_NaN();
  row(8)[head_dim - 1] = std::numeric_limits<float>::infinity();
  row(9)[0] = -std::numeric_limits<float>::infinity();
  *rows_out = rows;
  return x;
}

// The first n tokens of two sequences (`elements` values each of K and V) read back bit for bit alike.
void expect_identical_reads(const sr_kv_cache* cache, sr_seq_id a, sr_seq_id b, int64_t n, size_t elements) {
  std::vector<float> a_k(elements), a_v(elements), b_k(elements), b_v(elements);
  read_f32(cache, a, 0, 0, n, a_k.data(), a_v.data());
  read_f32(cache, b, 0, 0, n, b_k.data(), b_v.data());
  EXPECT_EQ(std::memcmp(a_k.data(), b_k.data(), elements * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a_v.data(), b_v.data(), elements * sizeof(float)), 0);
}

TEST_P(Fp8Cache, StoredValuesFollowTheElementModel) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int32_t head_dim : {64, 128, 256}) {
    auto ctx = make_context(GetParam());
    CacheShape s = shape(head_dim, 1);
    auto cache = make_cache(ctx.get(), s);
    int32_t n = 0;
    auto k = probe_rows(rng, head_dim, &n);
    auto v = probe_rows(rng, head_dim, &n);
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
    append_f32(cache.get(), seq, 0, n, k.data(), v.data());
    std::vector<float> k_back(k.size()), v_back(v.size());
    read_f32(cache.get(), seq, 0, 0, n, k_back.data(), v_back.data());
    for (int32_t r = 0; r < n; ++r) {
      const size_t at = static_cast<size_t>(r) * head_dim;
      const std::string what = "d" + std::to_string(head_dim) + " row " + std::to_string(r);
      expect_element_model(k_back.data() + at, k.data() + at, head_dim, "K " + what);
      expect_element_model(v_back.data() + at, v.data() + at, head_dim, "V " + what);
    }
    // Reads into 16-bit buffers round the same stored values.
    for (sr_dtype dtype : {SR_DTYPE_BF16, SR_DTYPE_F16}) {
      std::vector<uint16_t> k16(k.size());
      sr_kv_io io;
      sr_kv_io_default(&io, sizeof io);
      io.dtype = dtype;
      ASSERT_EQ(sr_kv_read(cache.get(), seq, 0, 0, n, k16.data(), nullptr, &io), SR_OK) << sr_last_error();
      for (size_t i = 0; i < k16.size(); ++i) {
        uint16_t expected = dtype == SR_DTYPE_BF16 ? float_to_bf16(k_back[i]) : float_to_f16(k_back[i]);
        if (std::isnan(k_back[i])) {
          EXPECT_TRUE(std::isnan(dtype == SR_DTYPE_BF16 ? bf16_to_float(k16[i]) : f16_to_float(k16[i])));
        } else {
          EXPECT_EQ(k16[i], expected) << "element " << i;
        }
      }
    }
  }
}

TEST_P(Fp8Cache, HalfPrecisionBuffersStoreWhatTheirF32ValuesStore) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto ctx = make_context(GetParam());
  CacheShape s = shape(128, 2);
  auto cache = make_cache(ctx.get(), s);
  const int64_t n = 37;
  auto k = gaussian(rng, static_cast<size_t>(n) * s.kv_heads * s.head_dim, 2.f);
  auto v = gaussian(rng, k.size(), 0.5f);
  for (sr_dtype dtype : {SR_DTYPE_BF16, SR_DTYPE_F16}) {
    std::vector<uint16_t> k16(k.size()), v16(v.size());
    std::vector<float> k_exact(k.size()), v_exact(v.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k16[i] = dtype == SR_DTYPE_BF16 ? float_to_bf16(k[i]) : float_to_f16(k[i]);
      v16[i] = dtype == SR_DTYPE_BF16 ? float_to_bf16(v[i]) : float_to_f16(v[i]);
      k_exact[i] = dtype == SR_DTYPE_BF16 ? bf16_to_float(k16[i]) : f16_to_float(k16[i]);
      v_exact[i] = dtype == SR_DTYPE_BF16 ? bf16_to_float(v16[i]) : f16_to_float(v16[i]);
    }
    sr_seq_id from_half, from_f32;
    ASSERT_EQ(sr_seq_add(cache.get(), &from_half), SR_OK);
    ASSERT_EQ(sr_seq_add(cache.get(), &from_f32), SR_OK);
    sr_kv_io io;
    sr_kv_io_default(&io, sizeof io);
    io.dtype = dtype;
    ASSERT_EQ(sr_kv_append(cache.get(), from_half, 0, n, k16.data(), v16.data(), &io), SR_OK) << sr_last_error();
    append_f32(cache.get(), from_f32, 0, n, k_exact.data(), v_exact.data());
    expect_identical_reads(cache.get(), from_half, from_f32, n, k.size());
  }
}

TEST_P(Fp8Cache, OneTokenAppendsStoreWhatABulkAppendStores) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto ctx = make_context(GetParam());
  CacheShape s = shape(64, 3, 32);
  auto cache = make_cache(ctx.get(), s);
  const int64_t n = 77;
  const size_t row = static_cast<size_t>(s.kv_heads) * s.head_dim;
  auto k = gaussian(rng, n * row);
  auto v = gaussian(rng, n * row);
  sr_seq_id bulk, single;
  ASSERT_EQ(sr_seq_add(cache.get(), &bulk), SR_OK);
  ASSERT_EQ(sr_seq_add(cache.get(), &single), SR_OK);
  append_f32(cache.get(), bulk, 0, n, k.data(), v.data());
  for (int64_t t = 0; t < n; ++t) append_f32(cache.get(), single, 0, 1, k.data() + t * row, v.data() + t * row);
  expect_identical_reads(cache.get(), bulk, single, n, k.size());
}

TEST_P(Fp8Cache, ForkCopyOnWriteAndTruncateCarryTheScales) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto ctx = make_context(GetParam());
  CacheShape s = shape(128, 2, 16);
  auto cache = make_cache(ctx.get(), s);
  const size_t row = static_cast<size_t>(s.kv_heads) * s.head_dim;
  // Rows of very different magnitudes, so a page copied without its scales reads back wrong.
  auto k = gaussian(rng, 40 * row, 100.f);
  auto v = gaussian(rng, 40 * row, 0.01f);
  sr_seq_id parent, child;
  ASSERT_EQ(sr_seq_add(cache.get(), &parent), SR_OK);
  append_f32(cache.get(), parent, 0, 40, k.data(), v.data());
  std::vector<float> parent_k(k.size()), parent_v(k.size());
  read_f32(cache.get(), parent, 0, 0, 40, parent_k.data(), parent_v.data());
  ASSERT_EQ(sr_seq_fork(cache.get(), parent, &child), SR_OK);
  auto k2 = gaussian(rng, 10 * row, 3.f);
  auto v2 = gaussian(rng, 10 * row, 3.f);
  append_f32(cache.get(), child, 0, 10, k2.data(), v2.data());  // copies the shared partial page
  std::vector<float> back_k(50 * row), back_v(50 * row);
  read_f32(cache.get(), child, 0, 0, 50, back_k.data(), back_v.data());
  EXPECT_EQ(std::memcmp(back_k.data(), parent_k.data(), parent_k.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(back_v.data(), parent_v.data(), parent_v.size() * sizeof(float)), 0);
  for (int t = 0; t < 10; ++t) {
    for (int32_t h = 0; h < s.kv_heads; ++h) {
      const size_t at = (40 + t) * row + h * s.head_dim, in = t * row + h * s.head_dim;
      expect_element_model(back_k.data() + at, k2.data() + in, s.head_dim, "child K");
      expect_element_model(back_v.data() + at, v2.data() + in, s.head_dim, "child V");
    }
  }
  std::vector<float> again_k(k.size()), again_v(k.size());
  read_f32(cache.get(), parent, 0, 0, 40, again_k.data(), again_v.data());
  EXPECT_EQ(std::memcmp(again_k.data(), parent_k.data(), parent_k.size() * sizeof(float)), 0);
  // Truncate into a page, append over the cut, and decode: the output is attention over what
  // the cache now holds.
  ASSERT_EQ(sr_seq_truncate(cache.get(), child, 21), SR_OK);
  append_f32(cache.get(), child, 0, 10, k2.data(), v2.data());
  std::vector<float> q = gaussian(rng, static_cast<size_t>(s.kv_heads) * s.head_dim, 0.05f);
  std::vector<float> out(q.size());
  std::vector<sr_seq_id> seqs = {child};
  sr_decode_args a = decode_args(seqs, s.kv_heads, q.data(), out.data());
  ASSERT_EQ(decode_with_host_buffers(ctx.get(), cache.get(), a, s.head_dim), SR_OK) << sr_last_error();
  auto ref = reference_outputs(cache.get(), seqs, 0, q.data(), s.kv_heads, s, 1.0 / std::sqrt(128.0));
  for (double e : per_head_errors(out.data(), ref, s.kv_heads, s.head_dim)) EXPECT_LT(e, 1e-5);
}

// Dense decode over an FP8 cache against float64 over the unquantized K and V: within the
// format's bound for every head, and within the largest errors measured on these generators
// with margin, since the bound is loose at large logits (25 fresh seeds: Gaussian 0.054-0.106,
// its diffuse heads have small outputs; mixed 0.025-0.051; sink-structured 0.025-0.032).
TEST_P(Fp8Cache, DenseOutputWithinTheFormatBoundOfUnquantizedAttention) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Kind {
    const char* name;
    bool synthetic, sink_heavy;
    double cap;
  };
  for (Kind kind : {Kind{"gaussian", false, false, 0.25}, Kind{"mixed", true, false, 0.12},
                    Kind{"sink-structured", true, true, 0.08}}) {
    SCOPED_TRACE(kind.name);
    auto ctx = make_context(GetParam());
    CacheShape s = shape(128, 4, 16);
    const int32_t group = 4, q_heads = s.kv_heads * group;
    s.max_q_heads = q_heads;
    auto cache = make_cache(ctx.get(), s);
    const int64_t length = 3000;
    const size_t row = static_cast<size_t>(s.kv_heads) * s.head_dim;
    std::vector<float> k(length * row), v(length * row), q;
    std::mt19937_64 rng(seed);
    if (kind.synthetic) {
      workloads::ContextSpec spec = kind.sink_heavy ? workloads::sink_heavy_spec(length, seed)
                                                    : workloads::mixed_spec(length, seed);
      spec.kv_heads = s.kv_heads;
      spec.group = group;
      workloads::SyntheticContext generator(spec);
      generator.tokens(0, length, k.data(), v.data());
      q = generator.query();
    } else {
      k = gaussian(rng, k.size());
      v = gaussian(rng, v.size());
      q = gaussian(rng, static_cast<size_t>(q_heads) * s.head_dim, 1.5f);
    }
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
    append_f32(cache.get(), seq, 0, length, k.data(), v.data());
    std::vector<float> out(q.size());
    std::vector<sr_seq_id> seqs = {seq};
    sr_decode_args a = decode_args(seqs, q_heads, q.data(), out.data());
    ASSERT_EQ(decode_with_host_buffers(ctx.get(), cache.get(), a, s.head_dim), SR_OK) << sr_last_error();
    const double c = 1.0 / std::sqrt(128.0);
    double worst = 0;
    for (int32_t h = 0; h < q_heads; ++h) {
      const int32_t kv = h / group;
      const float* qh = q.data() + static_cast<size_t>(h) * s.head_dim;
      auto exact = workloads::reference_attention(qh, k.data() + kv * s.head_dim, v.data() + kv * s.head_dim, length,
                                                  s.head_dim, static_cast<int64_t>(row), c);
      const double error = workloads::relative_error(out.data() + static_cast<size_t>(h) * s.head_dim, exact.data(),
                                                     s.head_dim);
      const double bound = fp8_relative_output_bound(qh, k.data() + kv * s.head_dim, v.data() + kv * s.head_dim,
                                                      length, s.head_dim, static_cast<int64_t>(row), c);
      EXPECT_LE(error, bound + 1e-5) << "head " << h;
      EXPECT_LE(error, kind.cap) << "head " << h << " (format bound " << bound << ")";
      worst = std::max(worst, error);
    }
    std::printf("[fp8] %s: largest relative error against unquantized float64 %.3e\n", kind.name, worst);
  }
}

// Rows whose scales span 2^-20 .. 2^15 (V) in random order, with the largest V row late, so a
// GPU pass raises its weights' frame mid-split (tensor_core_chunked.cuh): dense, tau and budget
// steps against float64 over the stored cache, per head_dim, exact (dense) or within the
// reported bound. (Named *Routed* so the device run repeats it with tau streamed everywhere.)
// The dense tolerance: f32 accumulation, as the other dense tests.
TEST_P(Fp8Cache, RoutedAndDenseStepsOverRowsOfWidelyDifferentScales) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int32_t head_dim : {64, 128, 256}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim));
    auto ctx = make_context(GetParam());
    CacheShape s = shape(head_dim, 2, 16);
    const int32_t group = 4, q_heads = s.kv_heads * group;
    s.max_q_heads = q_heads;
    auto cache = make_cache(ctx.get(), s);
    const int64_t length = 2500;
    const size_t row = static_cast<size_t>(s.kv_heads) * head_dim;
    std::mt19937_64 rng(seed + static_cast<uint64_t>(head_dim));
    std::vector<float> k = gaussian(rng, length * row), v = gaussian(rng, length * row);
    std::uniform_real_distribution<double> exponent(-20.0, 15.0), k_exponent(-2.0, 1.0);
    for (int64_t t = 0; t < length; ++t) {
      for (int32_t kv = 0; kv < s.kv_heads; ++kv) {
        float* kr = k.data() + t * row + static_cast<size_t>(kv) * head_dim;
        float* vr = v.data() + t * row + static_cast<size_t>(kv) * head_dim;
        const float v_scale = static_cast<float>(std::exp2(t == length - 40 ? 18.0 : exponent(rng)));
        const float k_scale = static_cast<float>(std::exp2(t < 4 ? 2.0 : k_exponent(rng)));  // sinks score high
        for (int32_t d = 0; d < head_dim; ++d) {
          kr[d] *= k_scale;
          vr[d] *= v_scale;
        }
      }
    }
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
    append_f32(cache.get(), seq, 0, length, k.data(), v.data());
    auto q = gaussian(rng, static_cast<size_t>(q_heads) * head_dim, 0.6f);
    const double c = 1.0 / std::sqrt(static_cast<double>(head_dim));
    auto ref = reference_outputs(cache.get(), {seq}, 0, q.data(), q_heads, s, c);
    struct Mode {
      sr_routing_mode mode;
      float tau, budget;
    };
    for (Mode m : {Mode{SR_ROUTING_OFF, 0.f, 0.f}, Mode{SR_ROUTING_TAU, 8.f, 0.f}, Mode{SR_ROUTING_BUDGET, 0.f, 1e-2f}}) {
      SCOPED_TRACE("routing " + std::to_string(m.mode));
      std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN()), bound(q_heads, -1.f);
      std::vector<sr_seq_id> seqs = {seq};
      sr_decode_args a = decode_args(seqs, q_heads, q.data(), out.data());
      a.scale = static_cast<float>(c);
      a.routing = m.mode;
      a.tau = m.tau;
      a.error_budget = m.budget;
      a.head_error_bound = bound.data();
      ASSERT_EQ(decode_with_host_buffers(ctx.get(), cache.get(), a, head_dim), SR_OK) << sr_last_error();
      auto errors = per_head_errors(out.data(), ref, q_heads, head_dim);
      for (int32_t h = 0; h < q_heads; ++h) {
        EXPECT_LE(errors[h], (m.mode == SR_ROUTING_OFF ? 0.0 : bound[h]) + 2e-5) << "head " << h << " bound " << bound[h];
        if (m.mode == SR_ROUTING_BUDGET) EXPECT_LE(bound[h], m.budget) << "head " << h;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Fp8Cache, ::testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace
}  // namespace sr::testing
