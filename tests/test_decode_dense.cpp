// Dense decode (routing off) against float64 attention on fresh random inputs, over head_dim,
// GQA group, page size, cache dtype, q/out dtypes and batches of mixed lengths.
#include <cmath>

#include "shared_arithmetic/dtype_convert.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

struct DenseCase {
  sr_backend backend;
  sr_dtype dtype;
  int32_t head_dim;
  int32_t group;
  int32_t page_tokens;
};

std::string case_name(const ::testing::TestParamInfo<DenseCase>& info) {
  const DenseCase& c = info.param;
  const char* dtypes[] = {"f32", "f16", "bf16", "fp8"};
  return std::string(sr_backend_name(c.backend)) + "_" + dtypes[c.dtype] + "_d" + std::to_string(c.head_dim) + "_g" +
         std::to_string(c.group) + "_p" + std::to_string(c.page_tokens);
}

std::vector<DenseCase> all_cases() {
  std::vector<DenseCase> cases;
  for (sr_backend backend : test_backends()) {
    for (sr_dtype dtype : {SR_DTYPE_F32, SR_DTYPE_F16, SR_DTYPE_BF16, SR_DTYPE_FP8_E4M3}) {
      for (int32_t head_dim : {64, 128, 256}) {
        for (int32_t group : {1, 4, 8}) {
          for (int32_t page : {16, 32, 64, 128}) cases.push_back({backend, dtype, head_dim, group, page});
        }
        // Groups wider than one head tile (GPU: 8 q-heads), a partial last tile included, up
        // to the widest supported (multi-query models put every q-head on one kv-head).
        for (int32_t group : {12, 64}) cases.push_back({backend, dtype, head_dim, group, 16});
      }
    }
  }
  return cases;
}

class DenseDecode : public ::testing::TestWithParam<DenseCase> {};

TEST_P(DenseDecode, MatchesFloat64ReferenceOnMixedLengths) {
  const DenseCase& c = GetParam();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto ctx = make_context(c.backend);
  CacheShape shape;
  shape.kv_heads = 2;
  shape.head_dim = c.head_dim;
  shape.page_tokens = c.page_tokens;
  shape.dtype = c.dtype;
  shape.max_q_heads = shape.kv_heads * c.group;
  auto cache = make_cache(ctx.get(), shape);
  // Length 1, page-1, page+1, a length off the page grid, and one long enough for several splits.
  std::vector<int64_t> lengths = {1, c.page_tokens - 1, c.page_tokens + 1, 333, 2500 + static_cast<int64_t>(rng() % 600)};
  std::vector<sr_seq_id> seqs;
  for (int64_t length : lengths) {
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
    auto k = gaussian(rng, static_cast<size_t>(length) * shape.kv_heads * c.head_dim);
    auto v = gaussian(rng, k.size());
    append_f32(cache.get(), seq, 0, length, k.data(), v.data());
    seqs.push_back(seq);
  }
  const int32_t q_heads = shape.kv_heads * c.group;
  const int64_t rows = static_cast<int64_t>(seqs.size()) * q_heads;
  auto q = gaussian(rng, static_cast<size_t>(rows) * c.head_dim, 1.5f);
  std::vector<float> out(q.size());
  sr_decode_args args = decode_args(seqs, q_heads, q.data(), out.data());
  ASSERT_EQ(decode_with_host_buffers(ctx.get(), cache.get(), args, c.head_dim), SR_OK) << sr_last_error();
  auto ref = reference_outputs(cache.get(), seqs, 0, q.data(), q_heads, shape, 1.0 / std::sqrt(c.head_dim));
  auto errors = per_head_errors(out.data(), ref, rows, c.head_dim);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_LT(errors[r], 1e-5) << "row " << r << " (sequence of " << lengths[r / q_heads] << " tokens)";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DenseDecode, ::testing::ValuesIn(all_cases()), case_name);

class DenseDecodeDtypes : public ::testing::TestWithParam<sr_backend> {};

// Queries and outputs in 16-bit types: q is rounded before use, out after.
TEST_P(DenseDecodeDtypes, HalfPrecisionQueriesAndOutputs) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto ctx = make_context(GetParam());
  CacheShape shape;
  shape.dtype = SR_DTYPE_BF16;
  auto cache = make_cache(ctx.get(), shape);
  sr_seq_id seq;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  const int64_t length = 1000;
  auto k = gaussian(rng, static_cast<size_t>(length) * shape.kv_heads * shape.head_dim);
  auto v = gaussian(rng, k.size());
  append_f32(cache.get(), seq, 0, length, k.data(), v.data());
  const int32_t q_heads = 8;
  auto q = gaussian(rng, static_cast<size_t>(q_heads) * shape.head_dim);
  std::vector<sr_seq_id> seqs = {seq};
  auto ref = reference_outputs(cache.get(), seqs, 0, q.data(), q_heads, shape, 1.0 / std::sqrt(128.0));
  for (sr_dtype qt : {SR_DTYPE_F16, SR_DTYPE_BF16}) {
    for (sr_dtype ot : {SR_DTYPE_F32, SR_DTYPE_F16, SR_DTYPE_BF16}) {
      std::vector<uint16_t> q16(q.size());
      std::vector<float> q_rounded(q.size());
      // The reference uses q rounded the way the library reads it (nearest even).
      for (size_t i = 0; i < q.size(); ++i) {
        float f = q[i];
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        if (qt == SR_DTYPE_BF16) {
          q16[i] = static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
          uint32_t back = static_cast<uint32_t>(q16[i]) << 16;
          std::memcpy(&q_rounded[i], &back, 4);
        } else {
          q16[i] = sr::float_to_f16(f);
          q_rounded[i] = sr::f16_to_float(q16[i]);
        }
      }
      auto ref_rounded = reference_outputs(cache.get(), seqs, 0, q_rounded.data(), q_heads, shape, 1.0 / std::sqrt(128.0));
      std::vector<uint16_t> out16(q.size());
      std::vector<float> out32(q.size());
      sr_decode_args a = decode_args(seqs, q_heads, nullptr, nullptr);
      a.q = q16.data();
      a.q_dtype = qt;
      a.out_dtype = ot;
      a.out = ot == SR_DTYPE_F32 ? static_cast<void*>(out32.data()) : static_cast<void*>(out16.data());
      ASSERT_EQ(decode_with_host_buffers(ctx.get(), cache.get(), a, shape.head_dim), SR_OK) << sr_last_error();
      std::vector<float> got(q.size());
      for (size_t i = 0; i < q.size(); ++i) {
        if (ot == SR_DTYPE_F32) {
          got[i] = out32[i];
        } else if (ot == SR_DTYPE_BF16) {
          uint32_t bits = static_cast<uint32_t>(out16[i]) << 16;
          std::memcpy(&got[i], &bits, 4);
        } else {
          got[i] = sr::f16_to_float(out16[i]);
        }
      }
      double tolerance = ot == SR_DTYPE_F32 ? 1e-5 : 1e-2;
      for (int32_t h = 0; h < q_heads; ++h) {
        double err = workloads::relative_error(got.data() + h * 128, ref_rounded.data() + h * 128, 128);
        EXPECT_LT(err, tolerance) << "q dtype " << qt << " out dtype " << ot << " head " << h;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, DenseDecodeDtypes, ::testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace
}  // namespace sr::testing
