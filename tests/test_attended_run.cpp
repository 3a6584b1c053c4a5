// The attended run of softmax_state.h (the GPU's layout of a window's tokens as whole pages),
// checked exhaustively over short sequences against the visible tokens it stands for: every
// attended token appears exactly once among the run's unmasked rows, a run row keeps its offset
// in its page, every page of the run holds an attended row and is masked at one end only, and
// the anchor set built in the run's coordinates names the same tokens as in the sequence's.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "shared_arithmetic/softmax_state.h"

namespace sr::testing {
namespace {

int64_t sequence_token(const AttendedRun& run, int64_t u) { return u < run.gap_from ? u : u + run.gap; }

std::set<int64_t> anchor_tokens(const AnchorSet& a, int64_t length) {
  std::set<int64_t> s;
  for (int64_t t = a.sink_begin; t < a.sink_end; ++t) s.insert(t);
  for (int64_t t = a.window_begin; t < length; ++t) s.insert(t);
  return s;
}

TEST(AttendedRun, MapsTheRunsRowsOntoTheVisibleTokensOnce) {
  int64_t cases = 0;
  for (int64_t page : {16, 32, 64}) {
    for (int64_t length = 1; length <= 200; ++length) {
      for (int32_t window_left : {-1, 0, 1, 5, 15, 16, 17, 31, 40, 63, 64, 100, 150, 199, 250}) {
        for (int32_t kept : {0, 1, 4, 15, 16, 17, 33, 70}) {
          if (window_left < 0 && kept > 0) continue;
          SCOPED_TRACE("page " + std::to_string(page) + " length " + std::to_string(length) + " window_left " +
                       std::to_string(window_left) + " kept " + std::to_string(kept));
          const VisibleTokens v = visible_tokens(length, window_left, kept);
          const AttendedRun run = attended_run(length, v, page);
          ASSERT_EQ(run.gap % page, 0);
          ASSERT_GE(run.gap, -page);
          ASSERT_EQ(run.gap_from % page, 0);
          ASSERT_LE(run.length, length + page);
          std::set<int64_t> seen;
          for (int64_t p0 = 0; p0 < run.length; p0 += page) {
            int attended = 0, changes = 0;
            bool previous = false;
            for (int64_t u = p0; u < p0 + page && u < run.length; ++u) {
              const int64_t t = sequence_token(run, u);
              const bool masked = u >= run.masked_begin && u < run.masked_end;
              ASSERT_GE(t, 0);
              // (A masked row may lie past the last token, in the last page: pages are whole.)
              ASSERT_LT(masked ? t / page : t, masked ? (length - 1) / page + 1 : length);
              ASSERT_EQ(t % page, u % page) << "a run row keeps its offset in its page";
              const bool visible = t < v.kept_end || t >= v.window_begin;
              if (!masked) {
                ASSERT_TRUE(visible) << "run row " << u << " (token " << t << ") is not attended";
                ASSERT_TRUE(seen.insert(t).second) << "token " << t << " appears twice";
                ++attended;
              }
              if (u > p0 && masked != previous) ++changes;
              previous = masked;
            }
            ASSERT_GT(attended, 0) << "the run's page from row " << p0 << " holds no attended row";
            ASSERT_LE(changes, 1) << "the page from row " << p0 << " is masked in its middle";
          }
          ASSERT_EQ(static_cast<int64_t>(seen.size()), attended_tokens(v, length));
          for (int32_t sinks : {0, 1, 4, 20}) {
            for (int32_t window : {0, 1, 16, 64}) {
              const AnchorSet in_run = anchor_set(run.length, sinks, window, run_visible(run, v));
              std::set<int64_t> mapped;
              for (int64_t u : anchor_tokens(in_run, run.length)) {
                ASSERT_FALSE(u >= run.masked_begin && u < run.masked_end) << "anchor row " << u << " is masked";
                mapped.insert(sequence_token(run, u));
              }
              ASSERT_EQ(mapped, anchor_tokens(anchor_set(length, sinks, window, v), length));
            }
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 10000);
}

TEST(AttendedRun, WithoutAWindowTheRunIsTheSequence) {
  for (int64_t length : {1, 15, 16, 1000}) {
    const AttendedRun run = attended_run(length, visible_tokens(length, -1, 0), 16);
    EXPECT_EQ(run.length, length);
    EXPECT_EQ(run.gap, 0);
    EXPECT_EQ(run.masked_begin, run.masked_end);
  }
}

}  // namespace
}  // namespace sr::testing
