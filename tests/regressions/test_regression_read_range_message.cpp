// Regression (fuzzer, tests/fuzz): sr_kv_read with first_token near INT64_MAX failed correctly
// with SR_ERR_OUT_OF_RANGE, but built its message from first_token + n_tokens
// (read_tokens, src/core/kv_cache.cpp): signed overflow. The range must be reported without
// computing a sum that can overflow.
// (UBSan stops the unfixed library: run under the asan preset.)
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "sinkrouter/sinkrouter.h"

namespace {

TEST(RegressionReadRangeMessage, ReadStartingNearInt64MaxIsOutOfRange) {
  sr_context_options co;
  sr_context_options_default(&co, sizeof co);
  co.backend = SR_BACKEND_CPU;
  co.num_threads = 1;
  sr_context* context = nullptr;
  ASSERT_EQ(sr_context_create(&co, &context), SR_OK) << sr_last_error();
  sr_kv_cache_options o;
  sr_kv_cache_options_default(&o, sizeof o);
  o.num_layers = 1;
  o.num_kv_heads = 1;
  o.head_dim = 64;
  o.capacity_tokens = 32;
  o.dtype = SR_DTYPE_F32;
  sr_kv_cache* cache = nullptr;
  ASSERT_EQ(sr_kv_cache_create(context, &o, &cache), SR_OK) << sr_last_error();
  sr_seq_id seq = 0;
  ASSERT_EQ(sr_seq_add(cache, &seq), SR_OK);
  std::vector<float> rows(2 * 64, 0.5f), out(2 * 64, -1.f);
  ASSERT_EQ(sr_kv_append(cache, seq, 0, 1, rows.data(), rows.data(), nullptr), SR_OK) << sr_last_error();

  const int64_t max = std::numeric_limits<int64_t>::max();
  for (int64_t first : {max, max - 1}) {
    EXPECT_EQ(sr_kv_read(cache, seq, 0, first, 2, out.data(), out.data(), nullptr), SR_ERR_OUT_OF_RANGE);
    EXPECT_STRNE(sr_last_error(), "");
  }
  for (float x : out) EXPECT_EQ(x, -1.f);
  sr_kv_cache_destroy(cache);
  sr_context_destroy(context);
}

}  // namespace
