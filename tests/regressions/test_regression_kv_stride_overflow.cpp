// Regression (fuzzer, tests/fuzz): strides whose far elements lie past any addressable buffer
// were accepted. With 2 kv-heads, head_stride = 64 and token_stride = INT64_MAX the overlap
// check in resolve_io (src/core/api_cache.cpp) passes ("heads inside tokens"), and the CPU
// backend's write_tokens / read_tokens (src/cpu/cpu_storage.cpp) compute the offset of token 1
// as 1 * INT64_MAX elements, times the element size: signed overflow, then a wild read or
// write. head_stride = 2^62 with the default token_stride overflowed num_kv_heads * head_stride.
// Such layouts must be rejected before anything is read or written.
// (Crashes the unfixed library in any build; UBSan names the overflow.)
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "sinkrouter/sinkrouter.h"
#include "small_cpu_cache.h"

namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

class RegressionKvStrideOverflow : public sr::regressions::SmallCpuCache {
 protected:
  RegressionKvStrideOverflow() : SmallCpuCache(2) {}

  void expect_rejected_and_length(sr_status status, int64_t expected_length) {
    EXPECT_NE(status, SR_OK);
    EXPECT_STRNE(sr_last_error(), "");
    int64_t length = -1;
    ASSERT_EQ(sr_seq_length(cache_, seq_, 0, &length), SR_OK);
    EXPECT_EQ(length, expected_length);
  }

  static sr_kv_io io_with(int64_t token_stride, int64_t head_stride) {
    sr_kv_io io;
    sr_kv_io_default(&io, sizeof io);
    io.token_stride = token_stride;
    io.head_stride = head_stride;
    return io;
  }

};

TEST_F(RegressionKvStrideOverflow, AppendWithTokenStrideBeyondAnyBufferFails) {
  for (int64_t token_stride : {kMax, kMax / 2 + 1, int64_t{1} << 62}) {
    sr_kv_io io = io_with(token_stride, 64);
    expect_rejected_and_length(sr_kv_append(cache_, seq_, 0, 2, rows_.data(), rows_.data(), &io), 2);
  }
}

TEST_F(RegressionKvStrideOverflow, ReadWithTokenStrideBeyondAnyBufferFails) {
  std::vector<float> out(rows_.size(), -1.f);
  sr_kv_io io = io_with(kMax, 64);
  expect_rejected_and_length(sr_kv_read(cache_, seq_, 0, 0, 2, out.data(), out.data(), &io), 2);
  for (float x : out) EXPECT_EQ(x, -1.f);
}

TEST_F(RegressionKvStrideOverflow, HeadStrideWhoseDefaultTokenStrideOverflowsFails) {
  sr_kv_io io = io_with(0, int64_t{1} << 62);  // token_stride defaults to 2 * head_stride
  expect_rejected_and_length(sr_kv_append(cache_, seq_, 0, 1, rows_.data(), rows_.data(), &io), 2);
}

// Found by the fuzzer after the span check above was added: that check computed the span in
// __int128 as (n_tokens - 1) * token_stride, then multiplied it by the element size, which for
// n_tokens near 2^62 and token_stride near 2^63 overflowed __int128 itself.
TEST_F(RegressionKvStrideOverflow, SpanOfHugeCountTimesHugeStrideFails) {
  std::vector<float> out(rows_.size(), -1.f);
  sr_kv_io io = io_with(kMax, 64);
  for (int64_t n_tokens : {int64_t{1} << 62, kMax}) {
    expect_rejected_and_length(sr_kv_read(cache_, seq_, 0, 0, n_tokens, out.data(), out.data(), &io), 2);
    expect_rejected_and_length(sr_kv_append(cache_, seq_, 0, n_tokens, rows_.data(), rows_.data(), &io), 2);
  }
  for (float x : out) EXPECT_EQ(x, -1.f);
}

}  // namespace
