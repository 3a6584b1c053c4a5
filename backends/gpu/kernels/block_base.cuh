// What every pass of the decode kernel shares: the block's shape, the shared state of one chunk,
// where a row of the paged cache lives, and the L2 prefetch of one line. The passes that read K
// and V (cuda_core_passes.cuh, tensor_core_passes.cuh) build on this; decode_kernel.cuh puts
// them together.
#pragma once

#include "compat.h"
#include "element_access.cuh"
#include "gpu_types.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "sinkrouter/sinkrouter.h"

namespace sr::gpu {

constexpr int kWarps = kThreads / kWarp;  // (kernel_limits.h: the block's shape)
// Nodes of one tree level that a chunk's pages touch, at most (level 1: a node per 4 pages,
// plus the cut ones at either end).
constexpr int kChunkNodes = kMaxChunkBlocks / kTreeFan + 2;
// A head's logit row is padded by 8 floats, so the rows of a tile's heads start in different
// banks (a plain 512-float stride puts them all in one).
constexpr int kLogitStride = kChunk + 8;

// Where the rows past the end of a pass continue, for the L2 prefetch: the chunk's V after its K
// (dense only: routed passes do not know yet which V blocks they read) or the next chunk's K
// after a pass over V. n == 0: nothing follows.
struct NextRows {
  const void* base;
  int64_t t0;
  int32_t n;
  int32_t same_chunk;  // pages in shared memory (this chunk) or read from the page table
};

struct SharedState {
  float w[kMaxTileHeads][kLogitStride];  // logits, then weights exp(s - m)
  float block_max[kMaxTileHeads][kMaxChunkBlocks];
  float block_sum[kMaxTileHeads][kMaxChunkBlocks];
  float block_sum2[kMaxTileHeads][kMaxChunkBlocks];  // sums of squared weights (tree_min_bound.h)
  int32_t page[kMaxChunkBlocks + 2];
  float vnorm[kMaxChunkBlocks + 2];
  float sigma[kMaxChunkBlocks + 2];  // the pages' spectral summaries (slot 0)
  // With a reference (p.vreference): the pages' centred sigma and largest centred norm, and per
  // head the skipped mass of the chunks it compensated (reference_compensation.h).
  float centred_sigma[kMaxChunkBlocks + 2], centred_norm[kMaxChunkBlocks + 2];
  float comp_mass[kMaxTileHeads];
  // Routed chunks: the lambda of each tree node the chunk's pages touch, [level - 1][node -
  // first node of the level], and each head's tree-min bound of the split's skipped pages so far.
  float node_lambda[kTreeLevels][kChunkNodes];
  TreeStream tree[kMaxTileHeads];
  int64_t chunk_sequence_page;  // the chunk's first page in sequence numbering
  int64_t sequence_pages;       // pages holding the sequence's tokens (a node is read only within)
  int32_t order[kMaxChunkBlocks];
  unsigned char skip[kMaxChunkBlocks];
  float m[kMaxTileHeads], l[kMaxTileHeads], skipped_l[kMaxTileHeads], skipped_err[kMaxTileHeads];
  // Two fields serve twice: during the passes the chunk's rescale factor and the anchor's
  // reference logit; once the splits are merged, each head's skipped mass and certified bound.
  union {
    float alpha[kMaxTileHeads];  // rescale of the accumulators for the current chunk
    float head_mass[kMaxTileHeads];
  };
  union {
    float m_ref[kMaxTileHeads];  // the anchor set's largest logit per head
    float head_bound[kMaxTileHeads];
  };
  float z[kMaxTileHeads], anchor_norm[kMaxTileHeads];
  int32_t blocks, skipped;
  int32_t last, over;
  NextRows after_k, after_v;  // the current chunk's (kept in shared memory to spare registers)
  // An adaptive launch's plan for this block (plan_adaptive_split): the group's split count and
  // the partial-state slot of its first split, then this block's split and head tile. (This
  // order was measured.)
  int32_t group_splits;
  int64_t group_first_slot;
  int32_t block_split, block_tile;
  int32_t publishes;  // this merge publishes the launch's split weights
  // The sequence's attended run (softmax_state.h, attended_run): the block's tokens are run
  // tokens; run pages from gap_page on sit gap_pages later in the page table, and rows
  // [masked_begin, masked_end) of the run are outside the window.
  int64_t masked_begin, masked_end;
  int32_t gap_page, gap_pages;
};

// kAmpleRegisters: the build has registers to spare (all but the 4-blocks-per-SM one), so it
// carries the L2 prefetch of the chunked passes and deeper load pipelines.
template <int DT, int D, int GT, bool kAmpleRegisters>
struct BlockBase {
  static constexpr int kElemBytes = static_cast<int>(dtype_element_bytes(DT));
  // FP8 rows carry a scale: the passes fold the V scales into the weights (scale_weights)
  // between the routing decision and the V pass.
  static constexpr bool kRowScales = DT == SR_DTYPE_FP8_E4M3;
  // Passes that keep a chunk's V scales in a shared buffer of the kernel's (tensor_core_chunked.cuh).
  static constexpr bool kSharedVScales = false;
  // The chunked passes' loads: wide DRAM fetches unless this build prefetches rows into the L2.
  static constexpr bool kChunkWideFetch = !kAmpleRegisters;

  const DecodeParams& p;
  SharedState& sh;
  float* reduce;  // [GT][D] shared
  const int32_t* pages;
  int64_t length;
  int32_t kv_head;
  int32_t valid_heads;
  int lane, warp;

  __device__ BlockBase(const DecodeParams& params, SharedState& shared, float* reduce_buffer, const int32_t* page_table,
                       int64_t tokens, int32_t head, int32_t heads)
      : p(params), sh(shared), reduce(reduce_buffer), pages(page_table), length(tokens), kv_head(head),
        valid_heads(heads), lane(lane_id()), warp(warp_id()) {}

  // The physical page of run page `run_page` (the page table's entry, past a window's gap).
  __device__ int32_t page_entry(int64_t run_page) const {
    return pages[run_page >= sh.gap_page ? run_page + sh.gap_pages : run_page];
  }

  // The rows of a chunk from run token t0 that lie before the window (decode_kernel.cuh cuts
  // chunks so that these are the chunk's only masked rows). Read where used: a value held across
  // the chunk's passes spilled the tight builds.
  __device__ int chunk_first(int64_t t0) const {
    return t0 >= sh.masked_begin && t0 < sh.masked_end ? static_cast<int>(sh.masked_end - t0) : 0;
  }

  // The attended rows [lo, hi) of the `rows` rows of a tile from run token `token` that lies in
  // one page: the window masks a tile at one end only (attended_run).
  __device__ void tile_span(int64_t token, int rows, int& lo, int& hi) const {
    lo = 0;
    hi = rows;
    if (token < sh.masked_end && token + rows > sh.masked_begin) {
      if (sh.masked_begin > token) {
        hi = static_cast<int>(sh.masked_begin - token);
      } else {
        lo = sh.masked_end - token < rows ? static_cast<int>(sh.masked_end - token) : rows;
      }
    }
  }

  // The soft cap alone on the logits of rows [0, n) of sh.w (the anchor's list: rows that are not
  // anchors are left out by the caller); a barrier after. Called where the step has a cap.
  __device__ void cap_logits(int n) {
    for (int h = warp; h < GT; h += kWarps) {
      for (int i = lane; i < n; i += kWarp) sh.w[h][i] = soft_cap(sh.w[h][i], p.logit_soft_cap);
    }
    __syncthreads();
  }

  // Element offset of `token`'s row when it sits in physical page `page`.
  __device__ int64_t page_row_offset(int32_t page, int64_t token) const {
    return ((static_cast<int64_t>(page) * p.kv_heads + kv_head) * p.page_tokens + (token & (p.page_tokens - 1))) * D;
  }

  // A token of the current chunk (its pages are in shared memory).
  __device__ int64_t row_offset(int64_t token, int32_t first_page) const {
    return page_row_offset(sh.page[(token >> p.page_shift) - first_page], token);
  }

  // A token of any chunk: the page number comes from the page table in global memory.
  __device__ int64_t table_row_offset(int64_t token) const { return page_row_offset(page_entry(token >> p.page_shift), token); }

  // The sequence page of run page `run_page` (a chunk never spans the window's gap).
  __device__ int64_t sequence_page(int64_t run_page) const { return run_page >= sh.gap_page ? run_page + sh.gap_pages : run_page; }

  // The spectral summary in slot `slot` of sequence page `page` (tree_min_bound.h).
  __device__ float spectral_slot(int64_t page, int slot) const {
    return p.vspectral[(static_cast<int64_t>(pages[page]) * p.kv_heads + kv_head) * kSpectralSlots + slot];
  }

  // The lambda of node `node` of `level` where its closing page holds the sequence's tokens;
  // +inf (none known) otherwise.
  __device__ float node_lambda_of(int level, int64_t node) const {
    const int64_t last = node_last_page(level, node);
    return last < sh.sequence_pages ? spectral_slot(last, level) : INFINITY;
  }

  // The same from the chunk's copy in shared memory (load_pages), for nodes its pages touch.
  __device__ float chunk_node_lambda(int level, int64_t node) const {
    const int64_t at = node - (sh.chunk_sequence_page >> (2 * level));
    return at >= 0 && at < kChunkNodes ? sh.node_lambda[level - 1][at] : node_lambda_of(level, node);
  }

  // Page numbers (and, routed, the V-norm and spectral summaries) of tokens [t0, t0 + n) into
  // shared memory.
  __device__ int32_t load_pages(int64_t t0, int n, bool with_vnorm) {
    int32_t first = static_cast<int32_t>(t0 >> p.page_shift);
    int32_t count = static_cast<int32_t>(((t0 + n - 1) >> p.page_shift) - first + 1);
    for (int i = threadIdx.x; i < count; i += kThreads) {
      int32_t page = page_entry(first + i);
      sh.page[i] = page;
      if (with_vnorm) {
        sh.vnorm[i] = p.vnorm[static_cast<int64_t>(page) * p.kv_heads + kv_head];
        sh.sigma[i] = p.page_sigma ? p.vspectral[(static_cast<int64_t>(page) * p.kv_heads + kv_head) * kSpectralSlots] : INFINITY;
        if (p.vreference) {
          const float* centred = p.vcentred + (static_cast<int64_t>(page) * p.kv_heads + kv_head) * kCentredSlots;
          sh.centred_sigma[i] = centred[0];
          sh.centred_norm[i] = centred[kCentredNormSlot];
        }
      }
    }
    if (with_vnorm) {
      // The lambdas' lookups (page table, then slot) by the block's last threads, beside the
      // pages' by its first, so the two chains of loads overlap.
      static_assert(kMaxChunkBlocks + 2 + kTreeLevels * kChunkNodes <= kThreads, "one lookup per thread");
      const int64_t first_sequence_page = sequence_page(first);
      const int i = static_cast<int>(threadIdx.x) - (kThreads - kTreeLevels * kChunkNodes);
      if (i >= 0 && p.spectral_nodes) {  // (only the node tree reads them)
        const int level = 1 + i / kChunkNodes;
        const int64_t node = (first_sequence_page >> (2 * level)) + i % kChunkNodes;
        const bool touched = node <= ((first_sequence_page + count - 1) >> (2 * level));
        sh.node_lambda[level - 1][i % kChunkNodes] = touched ? node_lambda_of(level, node) : INFINITY;
      }
      if (threadIdx.x == 0) sh.chunk_sequence_page = first_sequence_page;
    }
    return first;
  }

  // Row `row` of the pass over tokens [t0, t0 + n) is read: not before `first` (outside the
  // window), not past the end, not skipped.
  __device__ bool row_kept(int row, int first, int n, bool use_skip) const {
    return row < n && row >= first && !(use_skip && sh.skip[row >> p.page_shift]);
  }

  // Asks the L2 for byte `line` of row `row` of the pass, continuing into `next` past its end,
  // so more bytes are in flight than registers hold and the change from K to V (or to the next
  // chunk) does not drain the memory pipe. Rows of skipped blocks are not requested.
  __device__ void prefetch_line(const char* base, int64_t t0, int n, int32_t first_page, bool use_skip,
                                const NextRows* next, int row, int line) const {
    if (row < n) {
      if (!(use_skip && sh.skip[row >> p.page_shift])) prefetch_l2(base + row_offset(t0 + row, first_page) * kElemBytes + line);
    } else if (row - n < next->n) {
      const int64_t token = next->t0 + (row - n);
      const int64_t offset = next->same_chunk ? row_offset(token, first_page) : table_row_offset(token);
      prefetch_l2(static_cast<const char*>(next->base) + offset * kElemBytes + line);
    }
  }

  // Passes whose rows carry no scale have no weights to scale.
  template <class O>
  __device__ void scale_weights(O&, int64_t, int, int32_t) {}

  __device__ bool prefetching(const NextRows* next) const { return kAmpleRegisters && p.prefetch_rows > 0 && next != nullptr; }
};

// A warp's loop over `units` steps with the loads of step k + 1 in flight while step k is used:
// load(k, buf) fills N 16-byte registers, use(k, buf) consumes them.
template <int N, class Load, class Use>
__device__ __forceinline__ void pipelined(int units, Load&& load, Use&& use) {
  Bytes16 cur[N], next[N] = {};
  if (units > 0) load(0, cur);
  for (int k = 0; k < units; ++k) {
    if (k + 1 < units) load(k + 1, next);
    use(k, cur);
#pragma unroll
    for (int i = 0; i < N; ++i) cur[i] = next[i];
  }
}

}  // namespace sr::gpu
