// One decode step on the GPU: choose the split count from the SM count and the batch, fill the
// launch parameters (cache slots travel by value), launch the decode kernel and, when the error
// budget is enforced, the follow-up launch that recomputes flagged groups exactly. Allocates
// nothing and never synchronises, so a loop of steps can be captured in a graph.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "shared_arithmetic/split_plan.h"
#include "kernels/decode_kernel.cuh"
#include "gpu_backend.h"

namespace sr::gpu {
namespace {

// Shortest split worth a block of its own; SINKROUTER_CUDA_MIN_SPLIT overrides it (tuning).
int32_t min_split_tokens() {
  static const int32_t value = static_cast<int32_t>(tuning_knob("SINKROUTER_CUDA_MIN_SPLIT", 128, 1));
  return value;
}

// Rows ahead of the loads that the chunked passes request into the L2: 64 (best of 32-128 on
// the H100, bench/NOTES.md; builds short of registers leave the prefetch out), unless
// SINKROUTER_CUDA_PREFETCH_ROWS sets it (0: none; tuning).
int32_t prefetch_rows() {
  static const int32_t value = static_cast<int32_t>(tuning_knob("SINKROUTER_CUDA_PREFETCH_ROWS", 64, 0));
  return value;
}

// Dense splits stream without chunk barriers where the kernel can (tensor-core passes);
// SINKROUTER_CUDA_DENSE_STREAM=0 takes the chunked path instead (A/B tests).
int32_t stream_dense() {
  static const int32_t value = tuning_knob("SINKROUTER_CUDA_DENSE_STREAM", 1, 0) == 0 ? 0 : 1;
  return value;
}

#if defined(SR_PHASE_TRACE) && !defined(SR_GPU_HIP)
// Developer builds (phase_trace.cuh): one buffer for the stamps, cleared before each launch.
// After a launch that is not being captured, its stamps go to the file SINKROUTER_PHASE_TRACE
// names, behind a synchronisation: a trace build is for tracing, not for timing calls.
unsigned long long* phase_trace_buffer() {
  static unsigned long long* const buffer = [] {
    void* b = nullptr;
    return cudaMalloc(&b, sizeof(unsigned long long) * kTraceBlocks * kTraceStamps) == cudaSuccess
               ? static_cast<unsigned long long*>(b)
               : nullptr;
  }();
  return buffer;
}

void write_phase_trace(cudaStream_t stream, const LaunchBlocks& blocks) {
  const char* file = std::getenv("SINKROUTER_PHASE_TRACE");
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (!file || !phase_trace_buffer() || cudaStreamIsCapturing(stream, &capturing) != cudaSuccess ||
      capturing != cudaStreamCaptureStatusNone || cudaStreamSynchronize(stream) != cudaSuccess) {
    return;
  }
  static unsigned long long stamps[kTraceBlocks][kTraceStamps];
  if (cudaMemcpy(stamps, phase_trace_buffer(), sizeof stamps, cudaMemcpyDeviceToHost) != cudaSuccess) return;
  if (FILE* f = std::fopen(file, "wb")) {
    const uint32_t grid[4] = {blocks.splits, blocks.head_tiles, blocks.batch, kTraceStamps};
    std::fwrite(grid, sizeof grid, 1, f);
    std::fwrite(stamps, sizeof stamps, 1, f);
    std::fclose(f);
  }
}
#endif

// Tau steps of one sequence this long (tokens) or longer stream (over 16-token pages): where
// most V is skipped, K then streams without a bubble; shorter or batched steps keep the chunked
// passes, faster where more of V is read (H100, bench/NOTES.md stops 15, 17 and 20).
// SINKROUTER_CUDA_TAU_STREAM_FROM overrides it (0: always; tests and tuning).
int64_t tau_stream_from() {
  static const int64_t value = tuning_knob("SINKROUTER_CUDA_TAU_STREAM_FROM", kTauStreamFrom, 0);
  return value;
}

// SINKROUTER_CUDA_WAVE_BLOCKS=N: every launch's split count fills N blocks per SM (tuning; unset
// or 0: the rule in decode()).
int32_t wave_blocks_knob() {
  static const int32_t value = static_cast<int32_t>(tuning_knob("SINKROUTER_CUDA_WAVE_BLOCKS", 0, 0));
  return value;
}

int32_t tile_heads_for(int32_t group) { return group <= 1 ? 1 : group <= 4 ? 4 : kMaxTileHeads; }

// What a block costs beyond its bytes, in the bytes one block streams meanwhile with every
// slot busy (about 8 GB/s on the H100): its start, partial state and arrival take 4-5 us
// (bench/NOTES.md, stop 21, the phase trace), about 40 KB. And each split of a group adds
// about 0.035 us to the merge that ends the step (the merge reads every split's partial
// output), about 256 bytes.
constexpr double kBlockFixedBytes = 40 * 1024;
constexpr double kMergeBytesPerSplit = 256;

// Splits per group: the count that finishes soonest when every block streams 1/splits of a
// group's tokens (`token_bytes` each) and pays kBlockFixedBytes, the chip runs `wave` blocks at
// once (whole waves), and the merge pays kMergeBytesPerSplit per split; the smallest count on
// ties. (Without the fixed costs, one long dense sequence took two waves of short splits over
// one wave of long ones: at 1x128K 99 splits, 193.0 us, against 49, 185.9 us.)
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

// SINKROUTER_CUDA_ADAPTIVE_SPLITS=0: every launch splits its groups equally (A/B tests).
bool adaptive_splits_knob() {
  static const bool value = tuning_knob("SINKROUTER_CUDA_ADAPTIVE_SPLITS", 1, 0) != 0;
  return value;
}

// Whether a launch apportions its blocks among the groups by the split weights of the sequence's
// last routed step (common/split_plan.h): the tau stream of one sequence, whose kv-heads may
// read very different shares of V (H100, bench/NOTES.md stop 19: tau 12 at 1x512K mixed 557 ->
// 451 us, at 1x128K sink 152 -> 134; the chunked passes lost, budget mode by up to 14%), with
// splits of at least two chunks, few enough groups for one block's threads to plan
// (decode_kernel.cuh) and no group over the merge's limit.
bool adaptive_splits_fit(bool tau_stream, int64_t length, int64_t groups, int64_t splits) {
  if (!adaptive_splits_knob() || !tau_stream || groups < 2 || groups > kThreads) return false;
  return length >= splits * 2 * kChunk && max_planned_splits(groups, groups * splits) <= kMaxMergeSplits;
}

int32_t log2_exact(int32_t x) {
  int32_t s = 0;
  while ((1 << s) < x) ++s;
  return s;
}

}  // namespace

sr_status decode(sr_backend_device* device, sr_backend_storage* storage, const sr_decode_plan* plan,
                 sr_backend_error* err) {
  DeviceScope scope(device);
  const sr_decode_args& a = *plan->args;
  const sr_cache_geometry& g = storage->geometry;
  const int32_t tile_heads = tile_heads_for(plan->group);
  const int32_t tiles = (plan->group + tile_heads - 1) / tile_heads;
  auto kernel_for = [&](bool favour_occupancy, bool tau_stream) {
    return g.dtype == SR_DTYPE_F32   ? decode_kernel_f32(g.head_dim, tile_heads, favour_occupancy, tau_stream)
           : g.dtype == SR_DTYPE_F16 ? decode_kernel_f16(g.head_dim, tile_heads, favour_occupancy, tau_stream)
                                     : decode_kernel_bf16(g.head_dim, tile_heads, favour_occupancy, tau_stream);
  };
  if (!kernel_for(false, false).launch) {
    set_backend_error(err, "head_dim = %d is not built into the %s backend", g.head_dim, SR_GPU_VENDOR);
    return SR_ERR_UNSUPPORTED;
  }
  gpuStream_t stream = a.stream ? static_cast<gpuStream_t>(a.stream) : device->stream;

  DecodeParams p{};
  p.k = storage->k_layer(a.layer);
  p.v = storage->v_layer(a.layer);
  p.vnorm = storage->vnorm_layer(a.layer);
  p.tables = storage->tables_device;
  p.layer = a.layer;
  p.kv_heads = g.num_kv_heads;
  p.page_tokens = g.page_tokens;
  p.page_shift = log2_exact(g.page_tokens);
  p.group = plan->group;
  p.tiles = tiles;
  p.num_q_heads = a.num_q_heads;
  // A split holds several pages, so budget mode has blocks to choose among.
  p.min_split_tokens = std::max(min_split_tokens(), 4 * g.page_tokens);
  p.stream_dense = stream_dense();
  p.prefetch_rows = prefetch_rows();
  p.q = a.q;
  p.q_dtype = a.q_dtype;
  p.out = a.out;
  p.out_dtype = a.out_dtype;
  p.scale = a.scale;
  // Tau = infinity skips nothing: without a budget to enforce it is the dense path (the same bits).
  const bool skips_nothing = a.routing == SR_ROUTING_TAU && std::isinf(a.tau) && a.tau > 0.f && !(a.error_budget > 0.f);
  p.routing = skips_nothing ? SR_ROUTING_OFF : a.routing;
  p.tau = a.tau;
  p.budget = a.error_budget;
  p.sink_tokens = a.sink_tokens;
  p.window_tokens = a.window_tokens;
  p.enforce_budget = a.routing == SR_ROUTING_BUDGET || (a.routing == SR_ROUTING_TAU && a.error_budget > 0.f);
  p.head_skipped_mass = a.head_skipped_mass;
  p.head_error_bound = a.head_error_bound;
  p.stats = a.collect_stats ? device->stats : nullptr;
  p.run_dense = plan->run_dense;
  p.part_o = storage->part_o;
  p.part_state = storage->part_state;
  p.group_tally = storage->group_tally;
  p.group_skipped = storage->group_skipped;
  p.next_weight = storage->next_weight;
  p.groups_merged = storage->groups_merged;
  p.arrivals = storage->arrivals;
  p.redo = storage->redo;

  const int64_t token_bytes = 2 * static_cast<int64_t>(g.head_dim) * static_cast<int64_t>(storage->element_size);  // K and V
  std::lock_guard<std::mutex> lock(storage->decode_mutex);
  for (int32_t offset = 0; offset < a.batch; offset += kLaunchBatch) {
    const int32_t n = std::min(kLaunchBatch, a.batch - offset);
    int64_t longest = 1;
    for (int32_t i = 0; i < n; ++i) {
      p.slots[i] = static_cast<int32_t>(plan->seqs[offset + i].slot);
      longest = std::max(longest, plan->seqs[offset + i].length);
    }
    const int64_t groups = static_cast<int64_t>(n) * g.num_kv_heads * tiles;
    // How a launch of this batch runs, routed or dense. One dense sequence up to kFewBlocksUpTo:
    // kDenseWaveBlocks per SM of the build with two steps in flight. One routed sequence favours
    // occupancy: every slot of the 4-blocks build (where the shape has one).
    auto favours_occupancy = [&](bool routed) { return n == 1 && routed; };
    struct Launch {
      DecodeKernel kernel;
      LaunchBlocks blocks;
      int32_t splits, adaptive_splits;
    };
    auto configure = [&](bool routed) {
      const bool few_blocks = n == 1 && !routed && longest <= kFewBlocksUpTo;
      const bool tau_stream = routed && p.routing == SR_ROUTING_TAU && g.page_tokens == 16 && n == 1 && longest >= tau_stream_from();
      const DecodeKernel kernel = kernel_for(favours_occupancy(routed), tau_stream);
      const int32_t wave_blocks = wave_blocks_knob() > 0 ? wave_blocks_knob() : few_blocks ? kDenseWaveBlocks : kernel.blocks_per_sm();
      const int64_t wave = static_cast<int64_t>(device->sm_count) * wave_blocks;
      const int64_t max_splits = std::max<int64_t>(
          1, std::min({split_count(longest, p.min_split_tokens), storage->split_capacity / groups,
                       static_cast<int64_t>(kMaxMergeSplits)}));
      int64_t splits = pick_splits(groups, wave, max_splits, longest, token_bytes);
      // Page-aligned splits can leave the last few of the longest sequence empty: launch none.
      splits = split_count(longest, tokens_per_split(longest, splits, p.min_split_tokens, g.page_tokens));
      const LaunchBlocks blocks{static_cast<unsigned>(splits), static_cast<unsigned>(g.num_kv_heads * tiles), static_cast<unsigned>(n)};
      return Launch{kernel, blocks, static_cast<int32_t>(splits), adaptive_splits_fit(tau_stream, longest, groups, splits) ? 1 : 0};
    };
    auto launch = [&](const Launch& l, int32_t follow_up, const char* what) {
      p.splits = l.splits;
      p.adaptive_splits = l.adaptive_splits;
      p.follow_up = follow_up;
#if defined(SR_PHASE_TRACE) && !defined(SR_GPU_HIP)
      p.phase_trace = phase_trace_buffer();  // (a follow-up's stamps land over the first launch's)
      if (p.phase_trace && !follow_up) (void)cudaMemsetAsync(p.phase_trace, 0, sizeof(unsigned long long) * kTraceBlocks * kTraceStamps, stream);
#endif
      sr_status st = check(l.kernel.launch(p, l.blocks, stream, device->programmatic_launch), what, err);
#if defined(SR_PHASE_TRACE) && !defined(SR_GPU_HIP)
      if (st == SR_OK && !follow_up) write_phase_trace(stream, l.blocks);
#endif
      return st;
    };
    p.batch_offset = offset;
    p.batch = n;
    const bool routed = p.routing != SR_ROUTING_OFF;
    sr_status st = launch(configure(routed), 0, "launching the decode kernel");
    // The exact recompute of the flagged groups splits as this batch's dense step does (the same
    // splits, so the same order of sums: a recomputed head holds the very bits of routing off),
    // in the first launch's general build: the builds differ in loads in flight, not in
    // arithmetic, and a second kernel after the first cost a budget step 2 us at 1x4K (H100).
    if (st == SR_OK && p.enforce_budget) {
      Launch exact = configure(false);
      exact.kernel = kernel_for(favours_occupancy(routed), false);
      st = launch(exact, 1, "launching the exact follow-up kernel");
    }
    if (st != SR_OK) return st;
  }
  return SR_OK;
}

}  // namespace sr::gpu
