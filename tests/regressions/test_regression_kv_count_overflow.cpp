// Regression (fuzzer, tests/fuzz): token counts near INT64_MAX overflowed int64 arithmetic.
// resolve_io (src/core/api_cache.cpp) multiplied n_tokens * token_stride in its overlap check,
// and append_tokens (src/core/kv_cache.cpp) added old_length + n_tokens and rounded it up to
// pages, which wrapped to a negative page count: the append then "fit" and copied from far
// past the caller's buffer. A count no pool can hold must fail with nothing changed.
// (Crashes the unfixed library in any build; UBSan names the overflow.)
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "sinkrouter/sinkrouter.h"
#include "small_cpu_cache.h"

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

class RegressionKvCountOverflow : public sr::regressions::SmallCpuCache {
 protected:
  RegressionKvCountOverflow() : SmallCpuCache(3) {}
  void SetUp() override {
    SmallCpuCache::SetUp();
    ASSERT_EQ(sr_kv_cache_pages(cache_, &total_pages_, &free_pages_), SR_OK);
  }

  // The call failed with a message and the cache is as SetUp left it.
  void expect_failed_without_change(sr_status status) {
    EXPECT_NE(status, SR_OK);
    EXPECT_STRNE(sr_last_error(), "");
    int64_t length = -1, total = -1, free_pages = -1;
    ASSERT_EQ(sr_seq_length(cache_, seq_, 0, &length), SR_OK);
    EXPECT_EQ(length, 3);
    ASSERT_EQ(sr_kv_cache_pages(cache_, &total, &free_pages), SR_OK);
    EXPECT_EQ(total, total_pages_);
    EXPECT_EQ(free_pages, free_pages_);
  }

  int64_t total_pages_ = 0, free_pages_ = 0;
};

TEST_F(RegressionKvCountOverflow, AppendOfInt64MaxTokensFails) {
  expect_failed_without_change(sr_kv_append(cache_, seq_, 0, kMax, rows_.data(), rows_.data(), nullptr));
}

TEST_F(RegressionKvCountOverflow, AppendOfNearlyInt64MaxTokensWithPaddedStridesFails) {
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.head_stride = 80;
  io.token_stride = 2 * 80 + 16;
  expect_failed_without_change(sr_kv_append(cache_, seq_, 0, kMax - 15, rows_.data(), rows_.data(), &io));
}

TEST_F(RegressionKvCountOverflow, ReadOfInt64MaxTokensHeadMajorFails) {
  // [h][t][d] strides: the overlap check multiplies n_tokens * token_stride.
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.token_stride = 64;
  io.head_stride = 4 * 64;
  std::vector<float> out(rows_.size(), -1.f);
  expect_failed_without_change(sr_kv_read(cache_, seq_, 0, 0, kMax, out.data(), out.data(), &io));
  for (float x : out) EXPECT_EQ(x, -1.f);
}

}  // namespace
