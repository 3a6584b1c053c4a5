#include "launch_plan.h"

#include <algorithm>

#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/split_plan.h"

namespace sr::gpu {
namespace {

// One dense sequence up to this many tokens fills kDenseWaveBlocks blocks per SM, not every
// resident slot: fewer, longer splits, each with two steps in flight. From 32K every resident
// slot is faster (bench/NOTES.md).
constexpr int64_t kFewBlocksUpTo = 16 * 1024;
constexpr int32_t kDenseWaveBlocks = 2;

// What a block costs beyond its bytes, in the bytes one block streams meanwhile with every slot
// busy: its start, partial state and arrival (the phase trace puts them at a few microseconds),
// about 40 KB. Each split of a group adds a little to the merge that ends the step (it reads
// every split's partial output), about 256 bytes. Without these costs one long dense sequence
// took two waves of short splits over one wave of long ones, which measured slower.
constexpr double kBlockFixedBytes = 40 * 1024;
constexpr double kMergeBytesPerSplit = 256;

KernelBuild choose_build(const LaunchShape& s, bool tensor_cores, const Tuning& tuning, bool favour_occupancy,
                         bool tau_stream) {
  KernelBuild b{};
  b.head_dim = s.head_dim;
  b.tile_heads = tile_heads_for(s.group);
  b.min_blocks = general_min_blocks(s.dtype, s.head_dim, b.tile_heads, tensor_cores);
  if (has_occupancy_build(s.dtype, s.head_dim, b.tile_heads)) {
    const int32_t forced = tuning.blocks_per_sm;
    if (forced == 4 || (forced == 0 && favour_occupancy)) b.min_blocks = 4;
  }
  b.tau_stream = tau_stream && has_tau_stream(s.dtype, tensor_cores);
  return b;
}

// Whether a launch apportions its blocks among the groups by the split weights of the sequence's
// last routed step (src/shared_arithmetic/split_plan.h): the tau stream of one sequence, whose
// kv-heads may read very different shares of V (the chunked passes measured slower with it),
// with splits of at least two chunks, few enough groups for one block's threads to plan
// (adaptive_splits.cuh) and no group over the merge's limit.
bool adaptive_splits_fit(const Tuning& tuning, bool tau_stream, int64_t length, int64_t groups, int64_t splits) {
  if (!tuning.adaptive_splits || !tau_stream || groups < 2 || groups > kThreads) return false;
  return length >= splits * 2 * kChunk && max_planned_splits(groups, groups * splits) <= kMaxMergeSplits;
}

// A launch of the shape, routed or dense.
LaunchPlan configure(const LaunchShape& s, const DeviceFacts& device, const Tuning& tuning, bool routed) {
  LaunchPlan plan{};
  const int32_t tile_heads = tile_heads_for(s.group);
  plan.tiles = (s.group + tile_heads - 1) / tile_heads;
  plan.min_split_tokens = std::max(tuning.min_split_tokens, 4 * s.page_tokens);  // a split holds several pages,
                                                                                 // so budget mode has blocks to choose among
  const bool one_sequence = s.batch == 1;
  const bool few_blocks = one_sequence && !routed && s.longest <= kFewBlocksUpTo;
  // Tau steps of one long sequence over 16-token pages stream: there most V is skipped and K then
  // streams without a bubble; shorter or batched steps keep the chunked passes, faster where
  // more of V is read.
  const bool tau_stream = routed && s.routing == SR_ROUTING_TAU && s.page_tokens == 16 && one_sequence &&
                          s.longest >= tuning.tau_stream_from;
  plan.build = choose_build(s, device.tensor_cores, tuning, one_sequence && routed, tau_stream);
  plan.wave_blocks = tuning.wave_blocks > 0 ? tuning.wave_blocks
                     : few_blocks           ? kDenseWaveBlocks
                                            : device.blocks_per_sm(plan.build, s.dtype, device.context);
  const int64_t groups = static_cast<int64_t>(s.batch) * s.kv_heads * plan.tiles;
  const int64_t wave = static_cast<int64_t>(device.sm_count) * plan.wave_blocks;
  const int64_t max_splits = std::max<int64_t>(
      1, std::min({split_count(s.longest, plan.min_split_tokens), s.split_capacity / groups,
                   static_cast<int64_t>(kMaxMergeSplits)}));
  int64_t splits = pick_splits(groups, wave, max_splits, s.longest, token_bytes(s.dtype, s.head_dim));
  // Page-aligned splits can leave the last few of the longest sequence empty: launch none.
  splits = split_count(s.longest, tokens_per_split(s.longest, splits, plan.min_split_tokens, s.page_tokens));
  plan.splits = static_cast<int32_t>(splits);
  plan.adaptive_splits = adaptive_splits_fit(tuning, plan.build.tau_stream, s.longest, groups, splits) ? 1 : 0;
  plan.grid_splits = static_cast<unsigned>(splits);
  plan.grid_head_tiles = static_cast<unsigned>(s.kv_heads * plan.tiles);
  plan.grid_batch = static_cast<unsigned>(s.batch);
  return plan;
}

}  // namespace

int64_t pick_splits(int64_t groups, int64_t wave, int64_t max_splits, int64_t length, int64_t token_bytes) {
  int64_t best = 1;
  double best_time = 1e300;
  const int64_t limit = std::min<int64_t>(max_splits, 4 * wave / groups + 1);
  for (int64_t s = 1; s <= limit; ++s) {
    const double waves = static_cast<double>((groups * s + wave - 1) / wave);
    const double split_bytes = static_cast<double>((length + s - 1) / s) * static_cast<double>(token_bytes);
    const double time = waves * (split_bytes + kBlockFixedBytes) + static_cast<double>(s) * kMergeBytesPerSplit;
    if (time < best_time * (1 - 1e-9)) {
      best_time = time;
      best = s;
    }
  }
  return best;
}

LaunchPlan plan_launch(const LaunchShape& shape, const DeviceFacts& device, const Tuning& tuning) {
  return configure(shape, device, tuning, shape.routing != SR_ROUTING_OFF);
}

LaunchPlan plan_follow_up(const LaunchShape& shape, const DeviceFacts& device, const Tuning& tuning) {
  LaunchPlan plan = configure(shape, device, tuning, false);
  const bool routed = shape.routing != SR_ROUTING_OFF;
  plan.build = choose_build(shape, device.tensor_cores, tuning, shape.batch == 1 && routed, false);
  plan.adaptive_splits = 0;
  return plan;
}

}  // namespace sr::gpu
