// The routed block: the chunked passes' routing steps on top of the passes that read K and V.
// It scores the anchor set (the reference logit m_ref and, for budget mode, the anchor's sum and
// output norm), keeps each page's largest logit and weight sum, and decides which pages' V to
// skip with the arithmetic of src/shared_arithmetic/softmax_state.h, as the CPU's split kernel
// does (docs/ARCHITECTURE.md, "Routing arithmetic and the certified bound"). The passes run on
// tensor cores for 16-bit and FP8 caches on CUDA (tensor_core_*.cuh) and on CUDA/vector cores
// otherwise (cuda_core_passes.cuh: f32 caches, and every cache on HIP).
#pragma once

#include <math.h>

#include <type_traits>

#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/softmax_state.h"
#include "cuda_core_passes.cuh"
#include "launch_plan.h"
#if SR_GPU_TENSOR_CORES
#include "tensor_core_tau_stream.cuh"
#endif

namespace sr::gpu {

// Floats of one head's budget walk over a chunk's pages (tree_walk_floats, at most).
constexpr int kChunkWalkFloats = 3 * kTreeLevels * kChunkNodes;

#if SR_GPU_TENSOR_CORES
template <int DT, int D, int GT, bool P>
using Passes = std::conditional_t<tensor_core_passes(DT, true), TensorCorePasses<DT, D, GT, P>, CudaCorePasses<DT, D, GT, P>>;
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

  // Largest logit of each head over the anchor set and its learned sink (m_ref) and, for budget
  // mode, z = sum exp(s - m_ref) (the sink's term included, as on the CPU) and the norm of the
  // anchor-only output. sinks: the tile's sink logits, or null.
  __device__ void score_anchor(const Q& q, O& o, const AnchorSet& anchor, bool budget, const float* sinks) {
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
    auto is_anchor = [&](int64_t token) {
      return (token >= anchor.sink_begin && token < anchor.sink_end) || token >= anchor.window_begin;
    };
    if (threadIdx.x < GT) {
      sh.m_ref[threadIdx.x] = sinks && threadIdx.x < this->valid_heads ? sinks[threadIdx.x] : -INFINITY;
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
            sh.page[i] = this->page_entry(row_page(c, i << p.page_shift));
          }
          __syncthreads();
          score(q, 0, n, 0);
          if (p.logit_soft_cap > 0.f) {  // (rows that are not anchors are left out below)
            __syncthreads();
            this->cap_logits(n);
          }
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
          if constexpr (Base::kRowScales) {
            this->scale_weights(o, 0, n, 0);
            __syncthreads();
          }
          accumulate(o, 0, n, 0, false, 0);
        }
      }
    }
    if (budget) {
      __syncthreads();
      if (sinks && threadIdx.x < this->valid_heads) sh.z[threadIdx.x] += __expf(sinks[threadIdx.x] - sh.m_ref[threadIdx.x]);
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

  // Per head: the new running maximum, weights, and each block's largest logit, weight sum and
  // sum of squared weights.
  // Pages of up to 32 tokens: lane b walks block b (starting at a lane-dependent token, so the
  // lanes hit different banks); larger pages: the warp walks each block together.
  // The chunk's logits are shaped first where the step asks: soft-capped (tanh is monotone, so
  // capped block maxima still bound their blocks), and the rows before `first` (outside the
  // window) -inf. In this loop, whose registers it shares: a pass of its own spilled the tight
  // builds.
  __device__ void block_statistics(int first, int n) {
    const int PT = p.page_tokens;
    const int n_blocks = (n + PT - 1) / PT;
    const bool shaped = first > 0 || p.logit_soft_cap > 0.f;
    for (int h = warp; h < GT; h += kWarps) {
      float mx = -INFINITY;
      for (int i = lane; i < n; i += kWarp) {
        float s = sh.w[h][i];
        if (shaped) {
          s = i < first ? -INFINITY : soft_cap(s, p.logit_soft_cap);
          sh.w[h][i] = s;
        }
        mx = fmaxf(mx, s);
      }
      if (shaped) warp_sync();  // (the lanes below read logits that other lanes shaped)
      mx = warp_max(mx);
      float m_old = sh.m[h];
      float m_new = fmaxf(m_old, mx);
      if (PT <= kWarp) {
        if (lane < n_blocks) {
          const int i0 = lane * PT;
          const int i1 = i0 + PT < n ? i0 + PT : n;
          float bmax = -INFINITY, bsum = 0.f, bsum2 = 0.f;
          for (int k = 0; k < PT; ++k) {
            int i = i0 + ((k + lane) & (PT - 1));
            if (i < i1) {
              float s = sh.w[h][i];
              bmax = fmaxf(bmax, s);
              float w = __expf(s - m_new);
              sh.w[h][i] = w;
              bsum += w;
              bsum2 += w * w;
            }
          }
          sh.block_max[h][lane] = bmax;
          sh.block_sum[h][lane] = bsum;
          sh.block_sum2[h][lane] = bsum2;
        }
      } else {
        for (int b = 0; b < n_blocks; ++b) {
          int i1 = (b + 1) * PT < n ? (b + 1) * PT : n;
          float bmax = -INFINITY, bsum = 0.f, bsum2 = 0.f;
          for (int i = b * PT + lane; i < i1; i += kWarp) {
            float s = sh.w[h][i];
            bmax = fmaxf(bmax, s);
            float w = __expf(s - m_new);
            sh.w[h][i] = w;
            bsum += w;
            bsum2 += w * w;
          }
          bmax = warp_max(bmax);
          bsum = warp_sum(bsum);
          bsum2 = warp_sum(bsum2);
          if (lane == 0) {
            sh.block_max[h][b] = bmax;
            sh.block_sum[h][b] = bsum;
            sh.block_sum2[h][b] = bsum2;
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
  __device__ void route_chunk(int64_t c0, int n, int routing, const AnchorSet& anchor) {
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
          key = budget_order_key(&sh.block_max[0][b], kMaxChunkBlocks, sh.m_ref, valid_heads);
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
      // first block some head cannot afford. A block's cost is what skipping it adds to the
      // tree-min bound of the chunk's skipped pages (tree_walk_add; the split's bound, over
      // every chunk, is at most the chunks' sum).
      int stop = candidates;
      if (lane < valid_heads) stop = budget_stop(lane, candidates, n, n_blocks);
      for (int o = kWarp / 2; o > 0; o >>= 1) stop = min(stop, shfl_xor(stop, o));
      skip = key != INFINITY && rank < stop;
    }
    if (b < kMaxChunkBlocks) sh.skip[b] = skip;
    unsigned skipped_mask = warp_ballot(skip);
    warp_sync();
    if (lane < GT) {
      const int h = lane;
      // Each skipped page's tree term, min(P_B M_B, sigma_B ||p_B||_2), summed: the tree-min
      // bound without its nodes (with p.spectral_nodes the nodes join: add_skipped_pages). With
      // a reference, the same over the centred rows: where that sum is the smaller, the chunk
      // compensates (its skipped mass joins comp_mass, which the output takes times the
      // reference) and its bound is that sum; per chunk, so every chunk's share of the budget
      // holds whichever it takes.
      float alpha = sh.alpha[h];
      float l = sh.l[h] * alpha, skl = sh.skipped_l[h] * alpha, ske = sh.skipped_err[h] * alpha;
      float mass = 0.f, plain = 0.f, centred = 0.f;
      for (int bb = 0; bb < n_blocks; ++bb) {
        float s = sh.block_sum[h][bb];
        l += s;
        if (sh.skip[bb]) {
          mass += s;
          plain += tree_leaf_bound(page_leaf(h, bb));
          if (p.vreference) centred += tree_leaf_bound(centred_leaf(h, bb));
        }
      }
      float comp = sh.comp_mass[h] * alpha;
      if (p.vreference && compensation_pays(plain, centred)) {
        ske += centred;
        comp += mass;
      } else {
        ske += plain;
      }
      if (p.spectral_nodes) add_skipped_pages(h, alpha, n_blocks);
      sh.l[h] = l;
      sh.skipped_l[h] = skl + mass;
      sh.skipped_err[h] = ske;
      sh.comp_mass[h] = comp;
    }
    if (lane == 0) {
      sh.blocks += n_blocks;
      sh.skipped += __popc(skipped_mask);
    }
  }

  // The walk and the tree are kept out of line: inlined, their registers joined those the chunk
  // loop keeps live (the accumulators), and the passes spilled (bench/NOTES.md, stop 33). Block b
  // of the chunk is its page b.

  // Budget mode: how many blocks of the chunk's order head h can skip while its share of the
  // budget holds. A block's cost is its page's term of the tree-min bound, min(P_B M_B, sigma_B
  // ||p_B||_2): the terms' sum bounds the tree of the chunk's skipped pages, and the split's
  // bound, over every chunk, is at most the chunks' sum. With spectral_nodes 2, the cost is what
  // skipping it adds to the chunk's tree (tree_walk_add), nodes included: more skipped, but the
  // walk's node sums in local memory cost more than they save (bench/NOTES.md, stop 33).
  __device__ int budget_stop(int h, int candidates, int n, int n_blocks) const {
    const float share = static_cast<float>(n) / static_cast<float>(length);
    const float allowance = budget_allowance(p.budget, sh.anchor_norm[h], sh.z[h], share);
    const float to_ref = expf(fminf(sh.m[h] - sh.m_ref[h], 80.f));  // frame m -> frame m_ref
    if (p.spectral_nodes == 2) return budget_tree_stop(h, candidates, n_blocks, allowance, to_ref);
    // With a reference the chunk's bound is the smaller of the plain and the centred sums
    // (without one the centred pages are not loaded: the sum stays +inf).
    float spent = 0.f, spent_centred = p.vreference ? 0.f : INFINITY;
    for (int r = 0; r < candidates; ++r) {
      const int b = sh.order[r];
      const float plain = spent + tree_leaf_bound(page_leaf(h, b)) * to_ref;
      const float centred = p.vreference ? spent_centred + tree_leaf_bound(centred_leaf(h, b)) * to_ref : INFINITY;
      if (!(fminf(plain, centred) <= allowance)) return r;
      spent = plain;
      spent_centred = centred;
    }
    return candidates;
  }

  // Page b of the chunk as a leaf of head h's tree: its skipped weights with its summaries of the
  // rows, or of the rows minus the reference.
  __device__ TreePage page_leaf(int h, int b) const {
    return TreePage{sh.block_sum[h][b], sh.block_sum2[h][b], sh.vnorm[b], sh.sigma[b]};
  }
  __device__ TreePage centred_leaf(int h, int b) const {
    return TreePage{sh.block_sum[h][b], sh.block_sum2[h][b], sh.centred_norm[b], sh.centred_sigma[b]};
  }

  __device__ __noinline__ int budget_tree_stop(int h, int candidates, int n_blocks, float allowance, float to_ref) const {
    float nodes[kChunkWalkFloats];
    const int64_t chunk_page = sh.chunk_sequence_page;
    TreeWalk walk = tree_walk_start(chunk_page, chunk_page + n_blocks, nodes);
    auto lambda = [&](int level, int64_t node) { return this->chunk_node_lambda(level, node); };
    for (int r = 0; r < candidates; ++r) {
      const int b = sh.order[r];
      const TreePage leaf = page_leaf(h, b);
      if (!(tree_walk_add(walk, chunk_page + b, leaf, lambda, false) * to_ref <= allowance)) return r;
      tree_walk_add(walk, chunk_page + b, leaf, lambda, true);
    }
    return candidates;
  }

  // The chunk's skipped pages join head h's tree-min bound in page order, in the chunk's frame
  // (the stream in registers meanwhile).
  __device__ __noinline__ void add_skipped_pages(int h, float alpha, int n_blocks) const {
    TreeStream tree = sh.tree[h];
    tree_stream_scale(tree, alpha);
    auto lambda = [&](int level, int64_t node) { return this->chunk_node_lambda(level, node); };
    for (int b = 0; b < n_blocks; ++b) {
      if (sh.skip[b]) {
        tree_stream_add(tree, sh.chunk_sequence_page + b, page_leaf(h, b), lambda);
      }
    }
    sh.tree[h] = tree;
  }

  // Once the split's chunks are done, with spectral_nodes: each head's certified bound of what it
  // skipped, the tree-min bound of its skipped pages (in the split's final frame).
  __device__ void finish_routing() {
    if (p.spectral_nodes && threadIdx.x < GT) {
      auto lambda = [&](int level, int64_t node) { return this->chunk_node_lambda(level, node); };
      sh.skipped_err[threadIdx.x] = tree_stream_finish(sh.tree[threadIdx.x], lambda);
    }
    __syncthreads();
  }
};

// The passes and routing of a build. The 4-blocks-per-SM build is short of registers: no L2
// prefetch and no deeper pipeline there (they spill, and measured no faster: bench/NOTES.md).
template <int DT, int D, int GT, int kMinBlocks>
using BlockFor = Block<DT, D, GT, (kMinBlocks < 4)>;

}  // namespace sr::gpu
