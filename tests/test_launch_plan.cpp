// Launch planning of the GPU backend, on the CPU: the choices it makes for a recorded H100 (132
// SMs; each build's occupancy is its min_blocks) are pinned, so a change to the planner shows
// here before it shows in the benchmark. Shapes: the Llama-3.1-8B layer (8 kv-heads, GQA 4,
// head_dim 128, bf16, 16-token pages) at the benchmark's lengths, plus the other builds.
#include <gtest/gtest.h>

#include "launch_plan.h"

namespace sr::gpu {
namespace {

int32_t recorded_occupancy(const KernelBuild& build, int32_t, void*) { return build.min_blocks; }
const DeviceFacts kH100{132, true, recorded_occupancy, nullptr};
const DeviceFacts kHipGpu{110, false, recorded_occupancy, nullptr};  // no tensor-core passes

LaunchShape llama_layer(int32_t batch, int64_t length, sr_routing_mode routing) {
  return LaunchShape{SR_DTYPE_BF16, 128, 4, 8, 16, batch, length, routing, int64_t{1} << 22};
}

struct Expected {
  int32_t min_blocks;
  bool tau_stream;
  int32_t splits;
  int32_t wave_blocks;
  int32_t adaptive;
};

void expect_plan(const LaunchPlan& p, const Expected& e) {
  EXPECT_EQ(p.build.head_dim, 128);
  EXPECT_EQ(p.build.tile_heads, 4);
  EXPECT_EQ(p.build.min_blocks, e.min_blocks);
  EXPECT_EQ(p.build.tau_stream, e.tau_stream);
  EXPECT_EQ(p.splits, e.splits);
  EXPECT_EQ(p.wave_blocks, e.wave_blocks);
  EXPECT_EQ(p.adaptive_splits, e.adaptive);
  EXPECT_EQ(p.tiles, 1);
  EXPECT_EQ(p.grid_splits, static_cast<unsigned>(e.splits));
  EXPECT_EQ(p.grid_head_tiles, 8u);
}

TEST(LaunchPlan, DenseStepsOfTheBenchmarkShapes) {
  const Tuning t;
  // One sequence up to 16K: two blocks per SM of the 3-blocks build, longer splits.
  expect_plan(plan_launch(llama_layer(1, 4096, SR_ROUTING_OFF), kH100, t), {3, false, 32, 2, 0});
  expect_plan(plan_launch(llama_layer(1, 16384, SR_ROUTING_OFF), kH100, t), {3, false, 32, 2, 0});
  // From 32K every resident slot; one wave of long splits, not two of short ones.
  expect_plan(plan_launch(llama_layer(1, 32768, SR_ROUTING_OFF), kH100, t), {3, false, 49, 3, 0});
  expect_plan(plan_launch(llama_layer(1, 131072, SR_ROUTING_OFF), kH100, t), {3, false, 49, 3, 0});
  expect_plan(plan_launch(llama_layer(1, 524288, SR_ROUTING_OFF), kH100, t), {3, false, 99, 3, 0});
  // Batches: few splits per group.
  const LaunchPlan b8 = plan_launch(llama_layer(8, 32768, SR_ROUTING_OFF), kH100, t);
  expect_plan(b8, {3, false, 6, 3, 0});
  EXPECT_EQ(b8.grid_batch, 8u);
  expect_plan(plan_launch(llama_layer(32, 8192, SR_ROUTING_OFF), kH100, t), {3, false, 3, 3, 0});
  expect_plan(plan_launch(llama_layer(64, 4096, SR_ROUTING_OFF), kH100, t), {3, false, 3, 3, 0});
}

TEST(LaunchPlan, RoutedStepsAndTheirFollowUp) {
  const Tuning t;
  // One long tau sequence over 16-token pages streams in the 4-blocks build, its splits
  // following what each kv-head read; the exact follow-up splits as the dense step does.
  const LaunchShape tau512 = llama_layer(1, 524288, SR_ROUTING_TAU);
  expect_plan(plan_launch(tau512, kH100, t), {4, true, 66, 4, 1});
  expect_plan(plan_follow_up(tau512, kH100, t), {4, false, 99, 3, 0});
  // Shorter than tau_stream_from: the chunked passes.
  expect_plan(plan_launch(llama_layer(1, 32768, SR_ROUTING_TAU), kH100, t), {4, false, 64, 4, 0});
  // Budget mode never streams; the follow-up keeps the dense step's 49 splits.
  const LaunchShape budget128 = llama_layer(1, 131072, SR_ROUTING_BUDGET);
  expect_plan(plan_launch(budget128, kH100, t), {4, false, 66, 4, 0});
  expect_plan(plan_follow_up(budget128, kH100, t), {4, false, 49, 3, 0});
  // A routed batch keeps the 3-blocks build.
  expect_plan(plan_launch(llama_layer(8, 32768, SR_ROUTING_BUDGET), kH100, t), {3, false, 6, 3, 0});
  // 16-token pages only: 32-token pages take the chunked passes at any length.
  LaunchShape pages32 = tau512;
  pages32.page_tokens = 32;
  EXPECT_FALSE(plan_launch(pages32, kH100, t).build.tau_stream);
}

TEST(LaunchPlan, TuningKnobsOverrideTheRules) {
  Tuning t;
  t.tau_stream_from = 0;  // tau streams at every length
  EXPECT_TRUE(plan_launch(llama_layer(1, 4096, SR_ROUTING_TAU), kH100, t).build.tau_stream);
  t = Tuning{};
  t.blocks_per_sm = 3;  // the 3-blocks build even for one routed sequence
  EXPECT_EQ(plan_launch(llama_layer(1, 131072, SR_ROUTING_BUDGET), kH100, t).build.min_blocks, 3);
  t.blocks_per_sm = 4;  // the 4-blocks build even for dense batches
  EXPECT_EQ(plan_launch(llama_layer(8, 32768, SR_ROUTING_OFF), kH100, t).build.min_blocks, 4);
  t = Tuning{};
  t.wave_blocks = 1;
  const LaunchPlan one_wave = plan_launch(llama_layer(1, 131072, SR_ROUTING_OFF), kH100, t);
  EXPECT_EQ(one_wave.wave_blocks, 1);
  EXPECT_LT(one_wave.splits, 49);
  t = Tuning{};
  t.adaptive_splits = false;
  EXPECT_EQ(plan_launch(llama_layer(1, 524288, SR_ROUTING_TAU), kH100, t).adaptive_splits, 0);
  t = Tuning{};
  t.min_split_tokens = 4096;  // at most 128K / 4K splits
  EXPECT_LE(plan_launch(llama_layer(1, 131072, SR_ROUTING_OFF), kH100, t).splits, 32);
  // The planner never cuts splits shorter than 4 pages, so budget mode has blocks to choose among.
  LaunchShape pages64 = llama_layer(1, 65536, SR_ROUTING_OFF);
  pages64.page_tokens = 64;
  EXPECT_EQ(plan_launch(pages64, kH100, Tuning{}).min_split_tokens, 256);
}

TEST(LaunchPlan, BuildsOfOtherShapes) {
  const Tuning t;
  LaunchShape s = llama_layer(1, 65536, SR_ROUTING_OFF);
  s.head_dim = 256;  // tensor-core passes of 256 dims fit 2 blocks per SM
  EXPECT_EQ(plan_launch(s, kH100, t).build.min_blocks, 2);
  EXPECT_EQ(plan_launch(s, kHipGpu, t).build.min_blocks, 3);
  s = llama_layer(1, 65536, SR_ROUTING_OFF);
  s.group = 8;  // a tile of 8 heads
  EXPECT_EQ(plan_launch(s, kH100, t).build.tile_heads, 8);
  EXPECT_EQ(plan_launch(s, kH100, t).build.min_blocks, 2);
  s.group = 12;  // two tiles of 8 per kv-head
  EXPECT_EQ(plan_launch(s, kH100, t).tiles, 2);
  EXPECT_EQ(plan_launch(s, kH100, t).grid_head_tiles, 16u);
  s.group = 1;
  EXPECT_EQ(plan_launch(s, kH100, t).build.tile_heads, 1);
  // No streamed tau splits without tensor-core passes (f32 caches, HIP).
  LaunchShape f32 = llama_layer(1, 524288, SR_ROUTING_TAU);
  f32.dtype = SR_DTYPE_F32;
  EXPECT_FALSE(plan_launch(f32, kH100, t).build.tau_stream);
  EXPECT_EQ(plan_launch(f32, kH100, t).build.min_blocks, 3);  // the occupancy build is bf16's alone
  EXPECT_FALSE(plan_launch(llama_layer(1, 524288, SR_ROUTING_TAU), kHipGpu, t).build.tau_stream);
}

// FP8 caches run the tensor-core passes on CUDA (the tau stream included; no occupancy build:
// the 3-blocks builds) and the CUDA-core passes on HIP, and count half a 16-bit cache's bytes
// plus each row's scale.
TEST(LaunchPlan, Fp8CachesTakeTheTensorCorePassesOnCuda) {
  const Tuning t;
  EXPECT_EQ(token_bytes(SR_DTYPE_FP8_E4M3, 128), 2 * (128 + 4));
  EXPECT_EQ(token_bytes(SR_DTYPE_BF16, 128), 512);
  auto fp8_layer = [](int32_t batch, int64_t length, sr_routing_mode routing) {
    LaunchShape s = llama_layer(batch, length, routing);
    s.dtype = SR_DTYPE_FP8_E4M3;
    return s;
  };
  expect_plan(plan_launch(fp8_layer(1, 4096, SR_ROUTING_OFF), kH100, t), {3, false, 32, 2, 0});
  expect_plan(plan_launch(fp8_layer(1, 131072, SR_ROUTING_OFF), kH100, t), {3, false, 49, 3, 0});
  // Half the bytes per token: one wave of 49 splits where bf16 takes 99 at 512K.
  expect_plan(plan_launch(fp8_layer(1, 524288, SR_ROUTING_OFF), kH100, t), {3, false, 49, 3, 0});
  expect_plan(plan_launch(fp8_layer(64, 4096, SR_ROUTING_OFF), kH100, t), {3, false, 3, 3, 0});
  // One long tau sequence streams in the 3-blocks build, its splits adaptive; the follow-up
  // splits as the dense step does.
  const LaunchShape tau512 = fp8_layer(1, 524288, SR_ROUTING_TAU);
  expect_plan(plan_launch(tau512, kH100, t), {3, true, 49, 3, 1});
  expect_plan(plan_follow_up(tau512, kH100, t), {3, false, 49, 3, 0});
  Tuning everywhere;
  everywhere.tau_stream_from = 0;
  EXPECT_TRUE(plan_launch(fp8_layer(1, 4096, SR_ROUTING_TAU), kH100, everywhere).build.tau_stream);
  EXPECT_FALSE(plan_launch(fp8_layer(1, 524288, SR_ROUTING_TAU), kHipGpu, t).build.tau_stream);
  const LaunchShape budget128 = fp8_layer(1, 131072, SR_ROUTING_BUDGET);
  expect_plan(plan_launch(budget128, kH100, t), {3, false, 49, 3, 0});
  expect_plan(plan_follow_up(budget128, kH100, t), {3, false, 49, 3, 0});
  Tuning forced;
  forced.blocks_per_sm = 4;  // no 4-blocks build for FP8
  EXPECT_EQ(plan_launch(budget128, kH100, forced).build.min_blocks, 3);
  LaunchShape s = fp8_layer(1, 65536, SR_ROUTING_OFF);
  s.head_dim = 256;  // tensor-core passes of 256 dims: 2 blocks per SM (CUDA-core passes: 3)
  EXPECT_EQ(plan_launch(s, kH100, t).build.min_blocks, 2);
  EXPECT_EQ(plan_launch(s, kHipGpu, t).build.min_blocks, 3);
  s.head_dim = 64;  // the CUDA-core passes' tile of 4 spills at 3; the tensor-core passes' fits
  EXPECT_EQ(plan_launch(s, kH100, t).build.min_blocks, 3);
  EXPECT_EQ(plan_launch(s, kHipGpu, t).build.min_blocks, 2);
  s.group = 1;
  EXPECT_EQ(plan_launch(s, kHipGpu, t).build.min_blocks, 3);
  s = fp8_layer(1, 65536, SR_ROUTING_OFF);
  s.group = 8;
  EXPECT_EQ(plan_launch(s, kH100, t).build.tile_heads, 8);
  EXPECT_EQ(plan_launch(s, kH100, t).build.min_blocks, 2);
  EXPECT_TRUE(tensor_core_passes(SR_DTYPE_FP8_E4M3, true));
  EXPECT_FALSE(tensor_core_passes(SR_DTYPE_FP8_E4M3, false));
  EXPECT_TRUE(has_tau_stream(SR_DTYPE_FP8_E4M3, true));
  EXPECT_FALSE(tensor_core_passes(SR_DTYPE_F32, true));
}

TEST(LaunchPlan, SplitsFitTheWorkspaceAndTheMerge) {
  const Tuning t;
  LaunchShape s = llama_layer(1, 524288, SR_ROUTING_OFF);
  s.split_capacity = 8 * 10;  // room for 10 splits per group
  EXPECT_LE(plan_launch(s, kH100, t).splits, 10);
  s.split_capacity = int64_t{1} << 30;
  const DeviceFacts huge{100000, true, recorded_occupancy, nullptr};
  EXPECT_LE(plan_launch(s, huge, t).splits, kMaxMergeSplits);
  // A short sequence is never cut into empty splits.
  const LaunchPlan tiny = plan_launch(llama_layer(1, 100, SR_ROUTING_OFF), kH100, t);
  EXPECT_EQ(tiny.splits, 1);
}

TEST(LaunchPlan, PickSplitsPricesEachBlocksFixedCost) {
  // Enough blocks to fill one wave and no more when the bytes dominate.
  EXPECT_EQ(pick_splits(8, 396, 512, 131072, 512), 49);
  // Where the bytes are few, the fixed cost decides: 16 tokens in 4 splits beat 1 in this model,
  // which is why the planner caps the count by the shortest useful split first.
  EXPECT_EQ(pick_splits(1, 396, 512, 16, 512), 4);
  EXPECT_EQ(pick_splits(1, 396, 1, 16, 512), 1);
  // Never more than max_splits.
  EXPECT_LE(pick_splits(1, 396, 7, 1 << 20, 512), 7);
}

}  // namespace
}  // namespace sr::gpu
