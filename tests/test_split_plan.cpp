// The split arithmetic of common/split_plan.h that the GPU backend runs on the device: how one
// routed sequence's blocks are apportioned among its groups by the split weights of its last
// step (from the bytes each group read). Every block must land in exactly one group, every
// group must get a block, and the shares must follow the weights.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "shared_arithmetic/split_plan.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

// Each group's first block, and one past the last group's.
std::vector<int64_t> group_starts(const std::vector<int64_t>& weights, int64_t blocks) {
  const int64_t groups = static_cast<int64_t>(weights.size());
  int64_t total = 0;
  for (int64_t w : weights) total += w;
  std::vector<int64_t> starts;
  int64_t before = 0;
  for (int64_t g = 0; g <= groups; ++g) {
    starts.push_back(planned_group_start(g, groups, blocks, before, total));
    if (g < groups) before += weights[static_cast<size_t>(g)];
  }
  return starts;
}

TEST(SplitPlan, EqualWeightsSplitEveryGroupAlike) {
  for (int64_t groups = 1; groups <= 64; ++groups) {
    for (int64_t splits : {1, 2, 7, 66, 132, 512}) {
      const std::vector<int64_t> weights(static_cast<size_t>(groups), kMinSplitWeight + 17);
      const std::vector<int64_t> starts = group_starts(weights, groups * splits);
      for (int64_t g = 0; g <= groups; ++g) EXPECT_EQ(starts[static_cast<size_t>(g)], g * splits) << groups << " x " << splits;
    }
  }
}

TEST(SplitPlan, BlocksFollowTheWeightsAndEveryGroupGetsOne) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 2000; ++trial) {
    const int64_t groups = std::uniform_int_distribution<int64_t>(1, 128)(rng);
    const int64_t blocks = groups * std::uniform_int_distribution<int64_t>(1, 80)(rng);
    std::vector<int64_t> weights(static_cast<size_t>(groups));
    int64_t total = 0;
    for (int64_t& w : weights) {
      w = std::uniform_int_distribution<int64_t>(kMinSplitWeight, kMaxSplitWeight)(rng);
      total += w;
    }
    const std::vector<int64_t> starts = group_starts(weights, blocks);
    ASSERT_EQ(starts.front(), 0);
    ASSERT_EQ(starts.back(), blocks);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t count = starts[static_cast<size_t>(g) + 1] - starts[static_cast<size_t>(g)];
      ASSERT_GE(count, 1) << "group " << g << " of " << groups;
      // One block each, the rest by weight: the cut at cumulative weights rounds by under one.
      const double share = static_cast<double>(blocks - groups) * weights[static_cast<size_t>(g)] / total;
      EXPECT_LT(std::abs(static_cast<double>(count - 1) - share), 1.0) << "group " << g;
      // The GPU backend's limit check (gpu_decode.cu) assumes this.
      EXPECT_LE(count, max_planned_splits(groups, blocks)) << "group " << g;
    }
  }
}

TEST(SplitPlan, WeightIsTheBytesReadInUnitsOfK) {
  EXPECT_EQ(split_weight(0, 0), kMinSplitWeight);          // nothing scored: K's weight
  EXPECT_EQ(split_weight(100, 100), kMinSplitWeight);      // every V block skipped: K alone
  EXPECT_EQ(split_weight(100, 0), kMaxSplitWeight);        // all of V read: twice K
  EXPECT_EQ(split_weight(100, 50), 3 * kMinSplitWeight / 2);
  EXPECT_EQ(split_weight(3, 1), kMinSplitWeight + 171u);   // 2/3 of 256, rounded
  EXPECT_EQ(split_weight(5, 9), kMinSplitWeight);          // inconsistent counts: K alone
  EXPECT_EQ(split_weight(4000000000u, 0), kMaxSplitWeight);  // no overflow
}

}  // namespace
}  // namespace sr::testing
