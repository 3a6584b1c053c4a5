// One decode step on the GPU: plan each launch (launch_plan.h), fill the launch parameters (cache
// slots travel by value), launch the decode kernel and, when the error budget is enforced, the
// follow-up launch that recomputes flagged groups exactly. Allocates nothing and never
// synchronises, so a loop of steps can be captured in a graph.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "gpu_backend.h"
#include "kernels/phase_trace.cuh"
#include "shared_arithmetic/softmax_state.h"

namespace sr::gpu {

DecodeKernel decode_kernel(int32_t dtype, const KernelBuild& build) {
  switch (dtype) {
    case SR_DTYPE_F32: return decode_kernel_f32(build);
    case SR_DTYPE_F16: return decode_kernel_f16(build);
    case SR_DTYPE_BF16: return decode_kernel_bf16(build);
    case SR_DTYPE_FP8_E4M3: return decode_kernel_fp8(build);
    default: return DecodeKernel{};
  }
}

namespace {

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

int32_t blocks_per_sm_of(const KernelBuild& build, int32_t dtype, void*) {
  const DecodeKernel kernel = decode_kernel(dtype, build);
  return kernel.blocks_per_sm ? kernel.blocks_per_sm() : 1;
}

int32_t log2_exact(int32_t x) {
  int32_t s = 0;
  while ((1 << s) < x) ++s;
  return s;
}

}  // namespace

sr_status decode(sr_backend_device* device, sr_backend_storage* storage, const sr_step_desc* step,
                 sr_backend_error* err) {
  const sr_step_desc& a = *step;
  DeviceScope scope(device);
  const sr_step_routing& routing = a.routing;
  const sr_cache_geometry& g = storage->geometry;
  const Tuning& tuning = device->tuning;
  const DeviceFacts facts{device->sm_count, SR_GPU_TENSOR_CORES != 0, blocks_per_sm_of, nullptr};
  LaunchShape shape{g.dtype, g.head_dim, a.group, g.num_kv_heads, g.page_tokens, 0, 0, routing.mode, storage->split_capacity};
  gpuStream_t stream = a.stream ? static_cast<gpuStream_t>(a.stream) : device->stream;

  DecodeParams p{};
  p.k = storage->k_layer(a.layer);
  p.v = storage->v_layer(a.layer);
  p.vnorm = storage->vnorm_layer(a.layer);
  p.vspectral = storage->vspectral_layer(a.layer);
  // Compensation rides on the chunks' sums of page terms; the node tree (spectral_nodes) reports
  // one plain tree over the split, so it runs without.
  p.vcentred = storage->vcentred_layer(a.layer);
  p.vreference = tuning.compensate && tuning.spectral_nodes == 0 && storage->reference_frozen[a.layer]
                     ? storage->vreference_layer(a.layer)
                     : nullptr;
  p.k_scale = storage->k_scale_layer(a.layer);
  p.v_scale = storage->v_scale_layer(a.layer);
  p.tables = storage->tables_device;
  p.layer = a.layer;
  p.kv_heads = g.num_kv_heads;
  p.page_tokens = g.page_tokens;
  p.page_shift = log2_exact(g.page_tokens);
  p.group = a.group;
  p.num_q_heads = a.num_q_heads;
  p.stream_dense = tuning.stream_dense ? 1 : 0;
  p.prefetch_rows = tuning.prefetch_rows;
  p.spectral_nodes = tuning.spectral_nodes;
  p.page_sigma = tuning.page_sigma ? 1 : 0;
  p.q = a.q;
  p.q_dtype = a.q_dtype;
  p.out = a.out;
  p.out_dtype = a.out_dtype;
  p.scale = a.scale;
  p.routing = routing.mode;
  p.tau = routing.tau;
  p.budget = routing.error_budget;
  p.sink_tokens = routing.sink_tokens;
  p.window_tokens = routing.window_tokens;
  p.enforce_budget = routing.enforce_budget;
  p.head_skipped_mass = a.head_skipped_mass;
  p.head_error_bound = a.head_error_bound;
  p.sink_logits = a.sink_logits;
  p.lse = a.lse;
  p.window_left = a.window_left;
  p.window_sink_tokens = a.window_sink_tokens;
  p.logit_soft_cap = a.logit_soft_cap;
  p.stats = a.collect_stats ? device->stats : nullptr;
  p.run_dense = routing.run_dense;
  p.part_o = storage->part_o;
  p.part_state = storage->part_state;
  p.group_tally = storage->group_tally;
  p.group_skipped = storage->group_skipped;
  p.next_weight = storage->next_weight;
  p.groups_merged = storage->groups_merged;
  p.arrivals = storage->arrivals;
  p.redo = storage->redo;

  auto launch = [&](const LaunchPlan& plan, int32_t follow_up, const char* what) {
    const DecodeKernel kernel = decode_kernel(g.dtype, plan.build);
    if (!kernel.launch) {
      set_backend_error(err, "head_dim = %d is not built into the %s backend", g.head_dim, SR_GPU_VENDOR);
      return SR_ERR_UNSUPPORTED;
    }
    p.tiles = plan.tiles;
    p.min_split_tokens = plan.min_split_tokens;
    p.splits = plan.splits;
    p.adaptive_splits = plan.adaptive_splits;
    p.follow_up = follow_up;
    const LaunchBlocks blocks{plan.grid_splits, plan.grid_head_tiles, plan.grid_batch};
#if defined(SR_PHASE_TRACE) && !defined(SR_GPU_HIP)
    p.phase_trace = phase_trace_buffer();  // (a follow-up's stamps land over the first launch's)
    if (p.phase_trace && !follow_up) (void)cudaMemsetAsync(p.phase_trace, 0, sizeof(unsigned long long) * kTraceBlocks * kTraceStamps, stream);
#endif
    sr_status st = check(kernel.launch(p, blocks, stream, device->programmatic_launch), what, err);
#if defined(SR_PHASE_TRACE) && !defined(SR_GPU_HIP)
    if (st == SR_OK && !follow_up) write_phase_trace(stream, blocks);
#endif
    return st;
  };

  std::lock_guard<std::mutex> lock(storage->decode_mutex);
  for (int32_t offset = 0; offset < a.batch; offset += kLaunchBatch) {
    const int32_t n = std::min(kLaunchBatch, a.batch - offset);
    int64_t longest = 1;
    for (int32_t i = 0; i < n; ++i) {
      p.slots[i] = static_cast<int32_t>(a.seqs[offset + i].slot);
      // Launches are planned for the tokens the kernel walks: a window's run (attended_run).
      const int64_t length = a.seqs[offset + i].length;
      const VisibleTokens visible = visible_tokens(length, a.window_left, a.window_sink_tokens);
      longest = std::max(longest, attended_run(length, visible, g.page_tokens).length);
    }
    shape.batch = n;
    shape.longest = longest;
    p.batch_offset = offset;
    p.batch = n;
    sr_status st = launch(plan_launch(shape, facts, tuning), 0, "launching the decode kernel");
    if (st == SR_OK && routing.enforce_budget) st = launch(plan_follow_up(shape, facts, tuning), 1, "launching the exact follow-up kernel");
    if (st != SR_OK) return st;
  }
  return SR_OK;
}

}  // namespace sr::gpu
