// The one decode kernel, dense and routed (docs/ARCHITECTURE.md, "The flow of one decode step").
// One block scores one split of one (sequence, kv-head) for a tile of up to GT q-heads of its GQA
// group, so each K and V byte is read once per tile. A split runs either the chunked passes
// (routed_block.cuh: K scored into shared memory a chunk at a time, the routing decision, then V
// of the kept blocks) or a streamed pass (tensor_core_dense_stream.cuh, tensor_core_tau_stream.cuh).
// The last split of a group to finish merges the partial states (split_merge.cuh) and writes the
// results (group_result.cuh); a group over its error budget is flagged for the follow-up launch:
// the same kernel, dense, doing work only for flagged groups.
// Split boundaries come from the device-side length, so a replayed graph follows appends.
#pragma once

#include "adaptive_splits.cuh"
#include "group_result.cuh"
#include "phase_trace.cuh"
#include "routed_block.cuh"
#include "split_merge.cuh"

namespace sr::gpu {

// How a build numbers its blocks (the launch builds the grid to match): the builds with
// registers to spare (dense steps and batches) put the (kv-head, tile) pairs fastest, so a wave
// spreads each kv-head's splits over the chip; the 4-blocks build (one routed sequence) puts the
// splits fastest, which spreads the kv-heads that read V more evenly (bench/NOTES.md).
template <int kMinBlocks>
constexpr bool heads_fastest() {
  return kMinBlocks < 4;
}

// kMinBlocks: blocks per SM the register allocation must allow (more blocks hide more latency;
// fewer leave more registers). kTauStream: the build whose tau splits stream (tau_stream_split;
// the host launches it for one long sequence over 16-token pages), a kernel of its own so the
// general one keeps its registers. Every __shared__ array is declared here, in one order: ptxas
// folds shared addresses per kernel, and another layout (or an array declared inside a pass
// shared by two kernels) made the dense stream slower (bench/NOTES.md).
template <int DT, int D, int GT, int kMinBlocks, bool kTauStream>
__global__ void SR_LAUNCH_BOUNDS(kThreads, kMinBlocks) decode_kernel(const SR_GRID_CONSTANT DecodeParams params) {
  // Nothing earlier in the stream is read before this: q, the tables and the cache may all have
  // been written by the kernel before. (The next step's launch begins as this one's blocks exit.)
  wait_for_prior_grids();
  const DecodeParams& p = SR_KERNEL_PARAM_REF(params);
  SR_TRACE(p, kTraceEntry);
  using Blk = BlockFor<DT, D, GT, kMinBlocks>;
  __shared__ uint4 q_shared[Blk::kQSharedSlots];  // q's operands (tensor-core passes)
  __shared__ SharedState sh;
  __shared__ float reduce[GT * D];

  constexpr bool kHeadsFastest = heads_fastest<kMinBlocks>();
  const unsigned head_tiles = kHeadsFastest ? gridDim.x : gridDim.y;
  const int32_t b_local = blockIdx.z;
  const int64_t b = p.batch_offset + b_local;
  // Where this block works: its (kv-head, tile) slot and its split there, from the grid or, in an
  // adaptive launch, from the plan in shared memory. Read again where used rather than held in
  // registers, which the 4-blocks build has none to spare (its spills doubled when held).
  auto grid_tile_slot = [] { return kHeadsFastest ? blockIdx.x : blockIdx.y; };  // (unsigned, as blockIdx)
  auto grid_split = [] { return static_cast<int32_t>(kHeadsFastest ? blockIdx.y : blockIdx.x); };
  auto tile_slot = [&]() -> unsigned { return p.adaptive_splits ? static_cast<unsigned>(sh.block_tile) : grid_tile_slot(); };
  auto split_index = [&]() -> int32_t { return p.adaptive_splits ? sh.block_split : grid_split(); };
  // (A follow-up launch is never adaptive: its blocks are numbered as the grid says.)
  if (p.follow_up && p.redo[static_cast<int64_t>(b_local) * head_tiles + grid_tile_slot()] == 0) return;
  const int routing = p.follow_up ? SR_ROUTING_OFF : p.routing;

  const DeviceTables tables = *p.tables;
  const int32_t slot = p.slots[b_local];
  const int64_t seq_length = tables.lengths[static_cast<int64_t>(slot) * tables.num_layers + p.layer];
  // The block works on the run of the attended tokens' pages (without a window, the sequence).
  const VisibleTokens visible = visible_tokens(seq_length, p.window_left, p.window_sink_tokens);
  const AttendedRun run = attended_run(seq_length, visible, p.page_tokens);
  const int64_t length = run.length;
  if (p.adaptive_splits) {
    plan_adaptive_split(p, sh, tables.split_weight_row(slot, p.layer, p.kv_heads),
                        static_cast<int64_t>(grid_tile_slot()) * p.splits + grid_split(), static_cast<int32_t>(head_tiles));
  }
  const int32_t first_head = static_cast<int32_t>(tile_slot() % p.tiles) * GT;
  Blk blk(p, sh, reduce, tables.pages + static_cast<int64_t>(slot) * tables.page_stride, length, tile_slot() / p.tiles,
          p.group - first_head < GT ? p.group - first_head : GT);
  if constexpr (Blk::kSharedVScales) {
    __shared__ float v_scale_rows[kChunk];  // FP8 on tensor cores: the chunk's V scales
    blk.v_scale_rows = v_scale_rows;
  }

  // This split's tokens: the length read on the device, cut into the group's page-aligned pieces.
  const int64_t per_split = tokens_per_split(length, p.adaptive_splits ? sh.group_splits : p.splits, p.min_split_tokens, p.page_tokens);
  const int64_t begin = split_index() * per_split;
  const int64_t end = begin + per_split < length ? begin + per_split : length;

  typename Blk::Q q;
  typename Blk::O o;
  blk.load_q(q, (b * p.num_q_heads + static_cast<int64_t>(blk.kv_head) * p.group + first_head) * D, q_shared);
  blk.clear(o);
  if (threadIdx.x < GT) {
    sh.m[threadIdx.x] = -INFINITY;
    sh.l[threadIdx.x] = 0.f;
    sh.skipped_l[threadIdx.x] = 0.f;
    sh.skipped_err[threadIdx.x] = 0.f;
    sh.comp_mass[threadIdx.x] = 0.f;
    tree_stream_start(sh.tree[threadIdx.x]);
  }
  if (threadIdx.x == 0) {
    sh.sequence_pages = (seq_length + p.page_tokens - 1) >> p.page_shift;
    sh.blocks = 0;
    sh.skipped = 0;
    sh.gap_page = static_cast<int32_t>(run.gap_from >> p.page_shift);
    sh.gap_pages = static_cast<int32_t>(run.gap / p.page_tokens);
    sh.masked_begin = run.masked_begin;
    sh.masked_end = run.masked_end;
  }
  const AnchorSet anchor = anchor_set(length, p.sink_tokens, p.window_tokens, run_visible(run, visible));
  // The tile's learned sink logits, anchor logits of the routing reference (or null).
  const float* tile_sinks = p.sink_logits ? p.sink_logits + blk.kv_head * p.group + first_head : nullptr;
  __syncthreads();

  SR_TRACE(p, kTraceReady);
  bool streamed = false;
  if constexpr (kTauStream) {
    if (begin < end) blk.score_anchor(q, o, anchor, false, tile_sinks);
    blk.tau_stream_split(q, o, begin, end, anchor);
    streamed = true;
  } else if constexpr (Blk::kStreamsDense) {
    if (routing == SR_ROUTING_OFF && p.stream_dense) {
      blk.dense_split(q, o, begin, end);
      streamed = true;
    }
  }
  if (!streamed) {
    if (begin < end && routing != SR_ROUTING_OFF) blk.score_anchor(q, o, anchor, routing == SR_ROUTING_BUDGET, tile_sinks);

    for (int64_t c0 = begin; c0 < end;) {
      // With a window, a chunk stops where the kept range's last page is masked and the next one
      // starts at the window's first page, whose rows before `first` are masked (attended_run):
      // a chunk's masked rows are a prefix, which the passes leave out like rows past the end.
      int64_t stop = end - c0 < kChunk ? end : c0 + kChunk;
      if (c0 < sh.masked_begin && stop > sh.masked_begin) stop = sh.masked_begin;
      const int n = static_cast<int>(stop - c0);
      int32_t first_page = blk.load_pages(c0, n, routing != SR_ROUTING_OFF);
      if (threadIdx.x == 0) {
        // The L2 prefetch runs from K into this chunk's V when dense, and from V into the next K.
        const int64_t rest = end - c0 - n;
        sh.after_k = NextRows{p.v, c0, routing == SR_ROUTING_OFF ? n : 0, 1};
        sh.after_v = NextRows{p.k, c0 + n, static_cast<int32_t>(rest < kChunk ? rest : kChunk), 0};
      }
      __syncthreads();
      blk.score(q, c0, n, first_page, &sh.after_k);
      __syncthreads();
      blk.block_statistics(blk.chunk_first(c0), n);
      __syncthreads();
      blk.route_chunk(c0, n, routing, anchor);
      blk.scale_weights(o, c0, n, first_page);  // FP8's V scales (warp 0 joins once it has routed)
      __syncthreads();
      blk.rescale(o);
      blk.accumulate(o, c0, n, first_page, routing != SR_ROUTING_OFF, blk.chunk_first(c0), &sh.after_v);
      __syncthreads();
      c0 = stop == sh.masked_begin && stop < sh.masked_end ? (sh.masked_end >> p.page_shift) << p.page_shift : stop;
    }
    if (routing != SR_ROUTING_OFF) blk.finish_routing();
  }

  SR_TRACE(p, kTraceSplitDone);
  // This split's partial state, then the merge by the group's last split.
  const unsigned head_tile = tile_slot();
  const int32_t tile = head_tile % p.tiles;
  SplitGroup g;
  g.b = b;
  g.kv_head = head_tile / p.tiles;
  g.tile = tile;
  g.valid_heads = p.group - tile * GT < GT ? p.group - tile * GT : GT;
  g.slot = static_cast<int64_t>(b_local) * head_tiles + head_tile;
  g.splits = p.adaptive_splits ? sh.group_splits : p.splits;
  g.first_slot = p.adaptive_splits ? sh.group_first_slot : g.slot * p.splits;
  blk.reduce_to_shared(o);
  if (p.vreference && routing != SR_ROUTING_OFF) add_compensation<D, GT>(p, sh, reduce, blk.kv_head);
  write_partial_state<D, GT>(p, sh, reduce, g.first_slot + split_index());
  count_split(p, sh, tile);

  SR_TRACE(p, kTracePartialWritten);
  if (!arrives_last(p, sh, g, routing)) return;
  merge_splits<D, GT>(p, sh, reduce, g, blk.lane);
  finish_group<D, GT>(p, sh, reduce, g, routing, head_tiles, blk.lane);
}

}  // namespace sr::gpu
