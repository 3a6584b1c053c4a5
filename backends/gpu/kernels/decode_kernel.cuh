// The one decode kernel, dense and routed (DESIGN.md section 2). One block scores one split of
// one (sequence, kv-head) for a tile of up to GT q-heads of its GQA group, so each K and V byte
// is read once per tile. The split is walked in chunks of kChunk tokens (the GPU's analogue of
// one CPU split): pass 1 reads K and keeps every logit in shared memory, the routing decision
// picks the V blocks to skip with the arithmetic of common/softmax_state.h, pass 2 reads V of
// the kept blocks. The last block of a group to finish merges the partial (m, l, o) states,
// writes the outputs and the certified bound, and flags a group over its error budget for the
// follow-up launch (the same kernel, dense, doing work only for flagged groups).
// Split boundaries come from the device-side length, so a replayed graph follows appends.
// The passes over K and V run on tensor cores for 16-bit caches on CUDA (tensor_core_passes.cuh)
// and on the CUDA/vector cores otherwise (cuda_core_passes.cuh).
#pragma once

#include <math.h>

#include <type_traits>

#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/split_plan.h"
#include "cuda_core_passes.cuh"
#include "phase_trace.cuh"
#if SR_GPU_TENSOR_CORES
#include "tensor_core_passes.cuh"
#endif

namespace sr::gpu {

#if SR_GPU_TENSOR_CORES
template <int DT, int D, int GT, bool P>
using Passes = std::conditional_t<DT == SR_DTYPE_F32, CudaCorePasses<DT, D, GT, P>, TensorCorePasses<DT, D, GT, P>>;
#else
template <int DT, int D, int GT, bool P>
using Passes = CudaCorePasses<DT, D, GT, P>;
#endif

// The routing steps, on top of the passes that read K and V.
template <int DT, int D, int GT, bool kAmpleRegisters>
struct Block : Passes<DT, D, GT, kAmpleRegisters> {
  using Base = Passes<DT, D, GT, kAmpleRegisters>;
  using Q = typename Base::Q;
  using O = typename Base::O;
  using Base::Base;
  using Base::accumulate;
  using Base::lane;
  using Base::length;
  using Base::load_pages;
  using Base::p;
  using Base::reduce;
  using Base::reduce_to_shared;
  using Base::score;
  using Base::sh;
  using Base::valid_heads;
  using Base::warp;

  // The anchor set's pages as the pages of one chunk (or a few, for a large anchor): the sinks'
  // pages, then the window's, without the pages between. Scoring that chunk requests K of the
  // whole anchor at once, where a range at a time cost a round trip each before a split could
  // start. Pages stay whole, so a row keeps its offset in its page; rows that are not anchor
  // tokens (the rest of a sink page, the start of the window's first page) are masked.
  struct AnchorPages {
    int32_t sink_pages;    // pages [0, sink_pages) of the sequence
    int32_t window_first;  // then pages [window_first, last page]
    int32_t count;         // pages listed
    int32_t rows;          // rows of the list, up to the sequence's last token
  };

  __device__ AnchorPages anchor_pages(const AnchorSet& anchor) const {
    const int32_t last_page = static_cast<int32_t>((length - 1) >> p.page_shift);
    AnchorPages a;
    a.sink_pages = static_cast<int32_t>((anchor.sink_end + p.page_tokens - 1) >> p.page_shift);
    const int32_t window_page = static_cast<int32_t>(anchor.window_begin >> p.page_shift);
    a.window_first = window_page > a.sink_pages ? window_page : a.sink_pages;
    a.count = a.sink_pages + (last_page + 1 - a.window_first);
    // The list ends on the sequence's last page (its tokens up to length) unless the window is
    // empty and the sinks end earlier.
    const bool ends_on_last_page = a.count > a.sink_pages || a.sink_pages == last_page + 1;
    const int32_t last_rows = ends_on_last_page ? static_cast<int32_t>(length - (static_cast<int64_t>(last_page) << p.page_shift)) : p.page_tokens;
    a.rows = a.count == 0 ? 0 : ((a.count - 1) << p.page_shift) + last_rows;
    return a;
  }

  // Largest logit of each head over the anchor set (m_ref) and, for budget mode, z = sum
  // exp(s - m_ref) and the norm of the anchor-only output.
  __device__ void score_anchor(const Q& q, O& o, const AnchorSet& anchor, bool budget) {
    const AnchorPages a = anchor_pages(anchor);
    const int chunk_pages = kChunk >> p.page_shift;
    const int chunks = (a.count + chunk_pages - 1) / chunk_pages;
    // Page and token of row `row` of chunk c of the list.
    auto row_page = [&](int c, int row) {
      const int32_t listed = c * chunk_pages + (row >> p.page_shift);
      return listed < a.sink_pages ? listed : a.window_first + (listed - a.sink_pages);
    };
    auto row_token = [&](int c, int row) {
      return (static_cast<int64_t>(row_page(c, row)) << p.page_shift) + (row & (p.page_tokens - 1));
    };
    auto is_anchor = [&](int64_t token) { return token < anchor.sink_end || token >= anchor.window_begin; };
    if (threadIdx.x < GT) {
      sh.m_ref[threadIdx.x] = -INFINITY;
      sh.z[threadIdx.x] = 0.f;
    }
    // Tau mode needs m_ref only; budget mode a second pass, which rescores only if the list
    // took more than one chunk (the logits of one are still in shared memory).
    for (int pass = 0; pass < (budget ? 2 : 1); ++pass) {
      for (int c = 0; c < chunks; ++c) {
        const int n = a.rows - c * kChunk < kChunk ? a.rows - c * kChunk : kChunk;
        if (pass == 0 || chunks > 1) {
          __syncthreads();
          for (int i = threadIdx.x; i < ((n - 1) >> p.page_shift) + 1; i += kThreads) {
            sh.page[i] = this->pages[row_page(c, i << p.page_shift)];
          }
          __syncthreads();
          score(q, 0, n, 0);
        }
        __syncthreads();
        for (int h = warp; h < GT; h += kWarps) {
          if (pass == 0) {
            float mx = -INFINITY;
            for (int i = lane; i < n; i += kWarp) {
              if (is_anchor(row_token(c, i))) mx = fmaxf(mx, sh.w[h][i]);
            }
            mx = warp_max(mx);
            if (lane == 0) sh.m_ref[h] = fmaxf(sh.m_ref[h], mx);
          } else {
            float m_ref = sh.m_ref[h], sum = 0.f;
            for (int i = lane; i < n; i += kWarp) {
              float w = is_anchor(row_token(c, i)) ? __expf(sh.w[h][i] - m_ref) : 0.f;
              sh.w[h][i] = w;
              sum += w;
            }
            sum = warp_sum(sum);
            if (lane == 0) sh.z[h] += sum;
          }
        }
        if (pass == 1) {
          __syncthreads();
          accumulate(o, 0, n, 0, false);
        }
      }
    }
    if (budget) {
      __syncthreads();
      reduce_to_shared(o);
      for (int h = warp; h < GT; h += kWarps) {
        float n2 = 0.f;
        for (int d = lane; d < D; d += kWarp) n2 += reduce[h * D + d] * reduce[h * D + d];
        n2 = warp_sum(n2);
        if (lane == 0) sh.anchor_norm[h] = sqrtf(n2) / sh.z[h];
      }
      this->clear(o);
    }
    __syncthreads();
  }

  // Per head: the new running maximum, weights, and each block's largest logit and weight sum.
  // Pages of up to 32 tokens: lane b walks block b (starting at a lane-dependent token, so the
  // lanes hit different banks); larger pages: the warp walks each block together.
  __device__ void block_statistics(int n) {
    const int PT = p.page_tokens;
    const int n_blocks = (n + PT - 1) / PT;
    for (int h = warp; h < GT; h += kWarps) {
      float mx = -INFINITY;
      for (int i = lane; i < n; i += kWarp) mx = fmaxf(mx, sh.w[h][i]);
      mx = warp_max(mx);
      float m_old = sh.m[h];
      float m_new = fmaxf(m_old, mx);
      if (PT <= kWarp) {
        if (lane < n_blocks) {
          const int i0 = lane * PT;
          const int i1 = i0 + PT < n ? i0 + PT : n;
          float bmax = -INFINITY, bsum = 0.f;
          for (int k = 0; k < PT; ++k) {
            int i = i0 + ((k + lane) & (PT - 1));
            if (i < i1) {
              float s = sh.w[h][i];
              bmax = fmaxf(bmax, s);
              float w = __expf(s - m_new);
              sh.w[h][i] = w;
              bsum += w;
            }
          }
          sh.block_max[h][lane] = bmax;
          sh.block_sum[h][lane] = bsum;
        }
      } else {
        for (int b = 0; b < n_blocks; ++b) {
          int i1 = (b + 1) * PT < n ? (b + 1) * PT : n;
          float bmax = -INFINITY, bsum = 0.f;
          for (int i = b * PT + lane; i < i1; i += kWarp) {
            float s = sh.w[h][i];
            bmax = fmaxf(bmax, s);
            float w = __expf(s - m_new);
            sh.w[h][i] = w;
            bsum += w;
          }
          bmax = warp_max(bmax);
          bsum = warp_sum(bsum);
          if (lane == 0) {
            sh.block_max[h][b] = bmax;
            sh.block_sum[h][b] = bsum;
          }
        }
      }
      warp_sync();
      if (lane == 0) {
        sh.alpha[h] = rescale(m_old, m_new);
        sh.m[h] = m_new;
      }
    }
  }

  // Which blocks of the chunk [c0, c0 + n) skip V (warp 0), and the chunk's share of l and of
  // the skipped mass and error. Mirrors src/cpu/split_kernel.cpp.
  __device__ void route_chunk(int64_t c0, int n, int routing, const AnchorSet& anchor, int32_t first_page) {
    if (warp != 0) return;
    const int PT = p.page_tokens;
    const int n_blocks = (n + PT - 1) / PT;
    const int b = lane;
    bool skip = false;
    if (routing != SR_ROUTING_OFF && b < n_blocks) {
      int64_t t0 = c0 + static_cast<int64_t>(b) * PT;
      int64_t t1 = t0 + PT < c0 + n ? t0 + PT : c0 + n;
      bool is_anchor = range_touches_anchor(t0, t1, anchor);
      if (routing == SR_ROUTING_TAU) {
        if (!is_anchor) {
          skip = true;
          for (int h = 0; h < valid_heads; ++h) {
            skip = skip && tau_skips(sh.block_max[h][b], fmaxf(sh.m_ref[h], sh.m[h]), p.tau);
          }
        }
      }
    }
    if (routing == SR_ROUTING_BUDGET) {
      // Smallest block maxima (relative to m_ref, the largest over the tile's heads) first.
      float key = INFINITY;
      if (b < n_blocks) {
        int64_t t0 = c0 + static_cast<int64_t>(b) * PT;
        int64_t t1 = t0 + PT < c0 + n ? t0 + PT : c0 + n;
        if (!range_touches_anchor(t0, t1, anchor)) {
          key = -INFINITY;
          for (int h = 0; h < valid_heads; ++h) key = fmaxf(key, sh.block_max[h][b] - sh.m_ref[h]);
        }
      }
      int rank = 0, candidates = 0;
      for (int j = 0; j < kWarp; ++j) {
        float other = shfl(key, j);
        candidates += other != INFINITY;
        rank += other < key || (other == key && j < b);
      }
      if (key != INFINITY) sh.order[rank] = b;
      warp_sync();
      // Each head walks the order while its share of the budget holds; the tile stops at the
      // first block some head cannot afford.
      int stop = candidates;
      if (lane < valid_heads) {
        const int h = lane;
        float share = static_cast<float>(n) / static_cast<float>(length);
        float allowance = budget_allowance(p.budget, sh.anchor_norm[h], sh.z[h], share);
        float to_ref = expf(fminf(sh.m[h] - sh.m_ref[h], 80.f));  // frame m -> frame m_ref
        float spent = 0.f;
        for (int r = 0; r < candidates; ++r) {
          int bb = sh.order[r];
          float cost = sh.block_sum[h][bb] * to_ref * sh.vnorm[((c0 + bb * PT) >> p.page_shift) - first_page];
          if (!(spent + cost <= allowance)) {
            stop = r;
            break;
          }
          spent += cost;
        }
      }
      for (int o = kWarp / 2; o > 0; o >>= 1) stop = min(stop, shfl_xor(stop, o));
      skip = key != INFINITY && rank < stop;
    }
    if (b < kMaxChunkBlocks) sh.skip[b] = skip;
    unsigned skipped_mask = warp_ballot(skip);
    warp_sync();
    if (lane < GT) {
      const int h = lane;
      float alpha = sh.alpha[h];
      float l = sh.l[h] * alpha, skl = sh.skipped_l[h] * alpha, ske = sh.skipped_err[h] * alpha;
      for (int bb = 0; bb < n_blocks; ++bb) {
        float s = sh.block_sum[h][bb];
        l += s;
        if (sh.skip[bb]) {
          skl += s;
          ske += s * sh.vnorm[((c0 + bb * PT) >> p.page_shift) - first_page];
        }
      }
      sh.l[h] = l;
      sh.skipped_l[h] = skl;
      sh.skipped_err[h] = ske;
    }
    if (lane == 0) {
      sh.blocks += n_blocks;
      sh.skipped += __popc(skipped_mask);
    }
  }
};

// The passes and routing of a build. The 4-blocks-per-SM build is short of registers: no L2
// prefetch and no deeper pipeline there (they spill, and measured no faster: bench/NOTES.md).
template <int DT, int D, int GT, int kMinBlocks>
using BlockFor = Block<DT, D, GT, (kMinBlocks < 4)>;

// An adaptive launch (DecodeParams::adaptive_splits): block `flat` of the launch's groups x
// p.splits, numbered group-major, finds its group (head tile), its split there and the group's
// split count from the split weights of the sequence's last routed step (common/split_plan.h).
// Every block reads the same weights (the last step's merge published them), so the blocks agree.
inline __device__ void plan_adaptive_split(const DecodeParams& p, SharedState& sh, const uint16_t* stored_weights,
                                    int64_t flat, int32_t groups) {
  int32_t* weight = reinterpret_cast<int32_t*>(&sh.w[0][0]);  // scratch: no logits yet
  for (int g = threadIdx.x; g < groups; g += kThreads) {
    const uint32_t w = stored_weights[g / p.tiles];
    weight[g] = w == 0 ? static_cast<int32_t>(kMinSplitWeight) : static_cast<int32_t>(w);  // 0: no routed step yet
  }
  __syncthreads();
  const int64_t blocks = static_cast<int64_t>(groups) * p.splits;
  for (int g = threadIdx.x; g < groups; g += kThreads) {
    int64_t before = 0, total = 0;
    for (int i = 0; i < groups; ++i) {
      total += weight[i];
      if (i < g) before += weight[i];
    }
    const int64_t first = planned_group_start(g, groups, blocks, before, total);
    const int64_t next = planned_group_start(g + 1, groups, blocks, before + weight[g], total);
    if (flat >= first && flat < next) {
      sh.block_tile = g;
      sh.block_split = static_cast<int32_t>(flat - first);
      sh.group_splits = static_cast<int32_t>(next - first);
      sh.group_first_slot = first;
    }
  }
  __syncthreads();
}

// The last group of an adaptive launch (one sequence) to merge publishes every kv-head's split
// weight, the largest of its tiles'. No block of the launch reads the weights any more: every
// block arrived at its merge after planning its split. Out of line: inlined, the 4-blocks build
// spilled more in its passes.
static __device__ __noinline__ void publish_split_weights(const DecodeParams& p) {
  __threadfence();
  const DeviceTables* t = p.tables;
  uint16_t* weights = t->split_weight_row(p.slots[0], p.layer, p.kv_heads);
  const volatile uint32_t* next = p.next_weight;
  for (int h = threadIdx.x; h < p.kv_heads; h += kThreads) {
    uint32_t w = 0;
    for (int i = 0; i < p.tiles; ++i) {
      const uint32_t tile_weight = next[h * p.tiles + i];
      w = tile_weight > w ? tile_weight : w;
    }
    weights[h] = static_cast<uint16_t>(w);
  }
  if (threadIdx.x == 0) *p.groups_merged = 0;
}

// How a build numbers its blocks (the launch builds the grid to match): the builds with
// registers to spare (dense steps and batches) put the (kv-head, tile) pairs fastest, so a wave
// spreads each kv-head's splits over the chip (H100, 1x512K dense: 732 -> 721 us); the 4-blocks
// build (one routed sequence) puts the splits fastest, which spread the kv-heads that read V
// more evenly (mixed data, tau 12 at 1x512K: 600 us against 630 heads fastest).
template <int kMinBlocks>
constexpr bool heads_fastest() {
  return kMinBlocks < 4;
}

// kMinBlocks: blocks per SM the register allocation must allow (more blocks hide more latency;
// fewer leave more registers). kTauStream: the build whose tau splits stream (tau_stream_split;
// the host launches it for one long sequence over 16-token pages), a kernel of its own so the
// general one keeps its registers. Every __shared__ array is declared here, in the order that
// was measured: ptxas folds shared addresses per kernel, and a different layout (or an array
// declared inside a pass shared by two kernels) cost the dense stream 5% (bench/NOTES.md).
template <int DT, int D, int GT, int kMinBlocks, bool kTauStream>
__global__ void SR_LAUNCH_BOUNDS(kThreads, kMinBlocks) decode_kernel(const SR_GRID_CONSTANT DecodeParams params) {
  // Nothing earlier in the stream is read before this: q, the tables and the cache may all have
  // been written by the kernel before. (The next step's launch begins as this one's blocks
  // exit: releasing it earlier measured slower, bench/NOTES.md stop 24.)
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
  const int64_t length = tables.lengths[static_cast<int64_t>(slot) * tables.num_layers + p.layer];
  if (p.adaptive_splits) {
    plan_adaptive_split(p, sh, tables.split_weight_row(slot, p.layer, p.kv_heads),
                        static_cast<int64_t>(grid_tile_slot()) * p.splits + grid_split(), static_cast<int32_t>(head_tiles));
  }
  const int32_t first_head = static_cast<int32_t>(tile_slot() % p.tiles) * GT;
  Blk blk(p, sh, reduce, tables.pages + static_cast<int64_t>(slot) * tables.page_stride, length, tile_slot() / p.tiles,
          p.group - first_head < GT ? p.group - first_head : GT);

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
  }
  if (threadIdx.x == 0) {
    sh.blocks = 0;
    sh.skipped = 0;
  }
  const AnchorSet anchor = anchor_set(length, p.sink_tokens, p.window_tokens);
  __syncthreads();

  SR_TRACE(p, kTraceReady);
  bool streamed = false;
  if constexpr (kTauStream) {
    if (begin < end) blk.score_anchor(q, o, anchor, false);
    blk.tau_stream_split(q, o, begin, end, anchor);
    streamed = true;
  } else if constexpr (Blk::kStreamsDense) {
    if (routing == SR_ROUTING_OFF && p.stream_dense) {
      blk.dense_split(q, o, begin, end);
      streamed = true;
    }
  }
  if (!streamed) {
    if (begin < end && routing != SR_ROUTING_OFF) blk.score_anchor(q, o, anchor, routing == SR_ROUTING_BUDGET);

    for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
      const int n = static_cast<int>(end - c0 < kChunk ? end - c0 : kChunk);
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
      blk.block_statistics(n);
      __syncthreads();
      blk.route_chunk(c0, n, routing, anchor, first_page);
      __syncthreads();
      blk.rescale(o);
      blk.accumulate(o, c0, n, first_page, routing != SR_ROUTING_OFF, &sh.after_v);
      __syncthreads();
    }
  }

  SR_TRACE(p, kTraceSplitDone);
  // This split's partial state.
  const unsigned head_tile = tile_slot();
  const int32_t kv_head = head_tile / p.tiles;
  const int32_t tile = head_tile % p.tiles;
  const int32_t valid_heads = p.group - tile * GT < GT ? p.group - tile * GT : GT;
  const int64_t group_slot = static_cast<int64_t>(b_local) * head_tiles + head_tile;
  const int32_t group_splits = p.adaptive_splits ? sh.group_splits : p.splits;
  const int64_t group_first_slot = p.adaptive_splits ? sh.group_first_slot : group_slot * p.splits;
  const int64_t split_slot = group_first_slot + split_index();
  blk.reduce_to_shared(o);
  float* part_o = p.part_o + split_slot * kMaxTileHeads * D;
  for (int i = threadIdx.x; i < GT * D; i += kThreads) part_o[i] = reduce[i];
  if (threadIdx.x < GT) {
    int h = threadIdx.x;
    p.part_state[split_slot * kMaxTileHeads + h] = make_float4(sh.m[h], sh.l[h], sh.skipped_l[h], sh.skipped_err[h]);
  }
  if (threadIdx.x == 0 && p.stats && tile == 0 && !p.follow_up) {
    atomicAdd(&p.stats->blocks_total, static_cast<unsigned long long>(sh.blocks));
    atomicAdd(&p.stats->blocks_v_skipped, static_cast<unsigned long long>(sh.skipped));
  }
  if (threadIdx.x == 0 && p.stats && !p.follow_up && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0) {
    if (p.batch_offset == 0) atomicAdd(&p.stats->steps, 1ull);
    if (p.batch_offset == 0 && p.run_dense) atomicAdd(&p.stats->steps_run_dense, 1ull);
    atomicAdd(&p.stats->heads, static_cast<unsigned long long>(p.batch) * p.num_q_heads);
  }

  SR_TRACE(p, kTracePartialWritten);
  // The last split of the group to arrive merges them all.
  __syncthreads();
  if (threadIdx.x == 0) {
    if (routing != SR_ROUTING_OFF) {
      atomicAdd(&p.group_tally[group_slot], static_cast<unsigned long long>(sh.blocks) << 32 | static_cast<uint32_t>(sh.skipped));
    }
    __threadfence();
    unsigned int before = atomicAdd(&p.arrivals[group_slot], 1u);
    sh.last = before == static_cast<unsigned int>(group_splits - 1);
    sh.over = 0;
  }
  __syncthreads();
  SR_TRACE(p, kTraceArrived);
  if (!sh.last) return;
  __threadfence();

  const float* group_o = p.part_o + group_first_slot * kMaxTileHeads * D;
  const float4* group_state = p.part_state + group_first_slot * kMaxTileHeads;
  const int64_t out_row0 = (b * p.num_q_heads + static_cast<int64_t>(kv_head) * p.group + tile * GT) * D;
  // Each split's weight in the frame of the group's largest logit (one warp per head, lanes
  // over splits), then the outputs as weighted sums over splits. The merge is a chain of L2
  // round trips, so every load of a round is issued before any is used: indices past the last
  // split are clamped to it (a valid address, no branch) and their terms dropped.
  float* split_scale = &sh.w[0][0];  // [GT][splits]: splits <= kMaxMergeSplits
  constexpr int kStatesPerLane = 4;
  constexpr int kStateRound = kWarp * kStatesPerLane;  // splits per round of state loads
  const int last_split = group_splits - 1;
  auto clamped = [last_split](int s) { return s < last_split ? s : last_split; };
  for (int h = warp_id(); h < valid_heads; h += kWarps) {
    // Lane's states of round s0 (m, l, skipped l, skipped error); one round holds them all up
    // to kStateRound splits, and the second pass reuses it.
    float4 st[kStatesPerLane];
    auto load_round = [&](int s0) {
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) {
        st[k] = load_coherent4(reinterpret_cast<const float*>(group_state + clamped(s0 + k * kWarp + blk.lane) * kMaxTileHeads + h));
      }
    };
    float m = -INFINITY;
    for (int s0 = 0; s0 < group_splits; s0 += kStateRound) {
      load_round(s0);
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) m = fmaxf(m, st[k].x);  // (clamped: a real split's m)
    }
    m = warp_max(m);
    float l = 0.f, skl = 0.f, ske = 0.f;
    for (int s0 = 0; s0 < group_splits; s0 += kStateRound) {
      if (group_splits > kStateRound) load_round(s0);
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) {
        const int s = s0 + k * kWarp + blk.lane;
        if (s < group_splits) {
          const float c = rescale(st[k].x, m);
          split_scale[h * group_splits + s] = c;
          l += st[k].y * c;
          skl += st[k].z * c;
          ske += st[k].w * c;
        }
      }
    }
    l = warp_sum(l);
    skl = warp_sum(skl);
    ske = warp_sum(ske);
    if (blk.lane == 0) {
      sh.l[h] = l;
      sh.skipped_l[h] = skl;
      sh.skipped_err[h] = ske;
    }
  }
  __syncthreads();
  SR_TRACE(p, kTraceMergeStates);
  // A thread owns 4 consecutive outputs and keeps kInFlight splits' loads in flight; the sum
  // runs in split order (the same bits every run).
  constexpr int kInFlight = 16;
  for (int i = threadIdx.x; i < valid_heads * D / 4; i += kThreads) {
    const int h = 4 * i / D, d = 4 * i % D;
    const float* src = group_o + h * D + d;
    const float* scale = split_scale + h * group_splits;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int s0 = 0; s0 < group_splits; s0 += kInFlight) {
      float4 x[kInFlight];
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) {
        x[k] = load_coherent4(src + static_cast<int64_t>(clamped(s0 + k)) * kMaxTileHeads * D);
      }
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) {
        if (s0 + k < group_splits) {
          const float c = scale[s0 + k];
          acc[0] = fmaf(c, x[k].x, acc[0]);
          acc[1] = fmaf(c, x[k].y, acc[1]);
          acc[2] = fmaf(c, x[k].z, acc[2]);
          acc[3] = fmaf(c, x[k].w, acc[3]);
        }
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float value = acc[e] / sh.l[h];
      store_any(p.out, out_row0 + h * D + d + e, p.out_dtype, value);
      reduce[h * D + d + e] = value;
    }
  }
  __syncthreads();
  for (int h = warp_id(); h < valid_heads; h += kWarps) {
    float n2 = 0.f;
    for (int d = blk.lane; d < D; d += kWarp) n2 += reduce[h * D + d] * reduce[h * D + d];
    n2 = warp_sum(n2);
    if (blk.lane == 0) {
      float inv_l = 1.f / sh.l[h];
      float mass = sh.skipped_l[h] * inv_l;
      float bound = certified_relative_bound(sh.skipped_err[h] * inv_l, sqrtf(n2));
      int64_t head = b * p.num_q_heads + static_cast<int64_t>(kv_head) * p.group + tile * GT + h;
      if (p.head_skipped_mass) p.head_skipped_mass[head] = mass;
      if (p.head_error_bound) p.head_error_bound[head] = bound;
      sh.alpha[h] = mass;  // kept for the statistics below
      sh.m_ref[h] = bound;
      if (!p.follow_up && p.enforce_budget && !(bound <= p.budget)) atomicOr(&sh.over, 1);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    p.arrivals[group_slot] = 0;
    sh.publishes = 0;
    if (p.follow_up) {
      p.redo[group_slot] = 0;
      if (p.stats) {
        atomicAdd(&p.stats->heads_recomputed, static_cast<unsigned long long>(valid_heads));
        // The first pass's skips of this group were undone by the exact recompute.
        if (tile == 0) atomicAdd(&p.stats->blocks_v_skipped, static_cast<unsigned long long>(-static_cast<long long>(p.group_skipped[group_slot])));
      }
    } else {
      if (sh.over) p.redo[group_slot] = 1;
      if (routing != SR_ROUTING_OFF) {
        const unsigned long long tally = atomicExch(&p.group_tally[group_slot], 0ull);
        const uint32_t blocks = static_cast<uint32_t>(tally >> 32), skipped = static_cast<uint32_t>(tally);
        p.group_skipped[group_slot] = skipped;
        if (p.adaptive_splits) {
          p.next_weight[group_slot] = split_weight(blocks, skipped);
          __threadfence();
          sh.publishes = atomicAdd(p.groups_merged, 1u) == head_tiles - 1;
        }
      }
    }
  }
  SR_TRACE(p, kTraceMergeEnd);
  // Statistics hold each head's final result: a group the follow-up recomputes reports there.
  if (p.stats && threadIdx.x < valid_heads && (p.follow_up || !sh.over)) {
    atomic_max_nonneg(&p.stats->max_skipped_mass_bits, sh.alpha[threadIdx.x]);
    atomic_max_nonneg(&p.stats->max_error_bound_bits, sh.m_ref[threadIdx.x]);
  }
  // The last group of an adaptive launch to merge publishes every kv-head's split weight for the
  // sequence's next routed step.
  if (p.adaptive_splits) {
    __syncthreads();
    if (sh.publishes) publish_split_weights(p);
  }
}

}  // namespace sr::gpu
