// Regression (fuzzer, tests/fuzz): capacity_tokens near INT64_MAX overflowed the page count
// (capacity_tokens + page_tokens - 1 in validate_cache_options and sr_kv_cache_create,
// src/core/api_cache.cpp). The wrapped, negative page count passed validation and the cache
// then tried to size its page tables from it. Such a capacity must be refused as out of range.
// (UBSan stops the unfixed library: run under the asan preset.)
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "sinkrouter/sinkrouter.h"

namespace {

TEST(RegressionCacheCapacityOverflow, CapacityNearInt64MaxIsOutOfRange) {
  sr_context_options co;
  sr_context_options_default(&co, sizeof co);
  co.backend = SR_BACKEND_CPU;
  co.num_threads = 1;
  sr_context* context = nullptr;
  ASSERT_EQ(sr_context_create(&co, &context), SR_OK) << sr_last_error();
  const int64_t max = std::numeric_limits<int64_t>::max();
  for (int64_t capacity : {max, max - 15, max - 127}) {
    for (int32_t page_tokens : {16, 128}) {
      sr_kv_cache_options o;
      sr_kv_cache_options_default(&o, sizeof o);
      o.num_layers = 1;
      o.num_kv_heads = 1;
      o.head_dim = 64;
      o.page_tokens = page_tokens;
      o.capacity_tokens = capacity;
      sr_kv_cache* cache = nullptr;
      EXPECT_EQ(sr_kv_cache_create(context, &o, &cache), SR_ERR_OUT_OF_RANGE)
          << "capacity " << capacity << ", page_tokens " << page_tokens << ": " << sr_last_error();
      EXPECT_EQ(cache, nullptr);
      sr_kv_cache_destroy(cache);
    }
  }
  sr_context_destroy(context);
}

}  // namespace
