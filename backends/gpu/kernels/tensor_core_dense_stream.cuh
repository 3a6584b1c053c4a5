// Dense splits on tensor cores, streamed: no chunks and no barriers until the end of the split.
// Routing off needs no block statistics, so each warp runs its own online softmax over tiles of
// 16 tokens and loads K and V of a tile in one pipeline; the warps' states are combined once
// (merge_warps). The helpers of a tile's online softmax serve the tau stream too.
#pragma once

#include "tensor_core_chunked.cuh"

namespace sr::gpu {

template <int DT, int D, int GT, bool kAmpleRegisters>
struct TensorCoreDenseStream : TensorCoreChunkedPasses<DT, D, GT, kAmpleRegisters> {
  using Chunked = TensorCoreChunkedPasses<DT, D, GT, kAmpleRegisters>;
  using Base = typename Chunked::Base;
  using Chunked::Chunked;
  using typename Chunked::Q;
  using typename Chunked::O;
  using Chunked::kScoreTile;
  using Chunked::kScoreUnitLoads;
  using Chunked::kScoreUnits;
  using Chunked::kPacked;
  using Chunked::kVTile;
  using Chunked::kVUnits;
  using Chunked::kVMmas;
  using Chunked::column_head;
  using Chunked::group;
  using Chunked::thread_in_group;
  using Chunked::scale_heads;
  using Chunked::rescale;
  using Chunked::multiply_k;
  using Chunked::score;
  using Chunked::weight_operands;
  using Chunked::multiply_v;
  using Chunked::reduce_to_shared;
  using Chunked::load_piece;
  using Chunked::p;
  using Chunked::sh;
  using Chunked::warp;

  // ---- Dense splits, streamed: no chunks, no barriers until the end.
  // Routing off needs no block statistics, so each warp runs its own online softmax over tiles
  // of 16 tokens (w, w + 4, ...) and loads K and V of a tile in one pipeline: the memory pipe
  // never drains at a barrier. Registers hold kAhead steps in flight (the L2 prefetch of the
  // warp's next tile measured slower). The tile's logits stay in registers:
  // the score C fragment gives thread (g, t) tokens 2t, 2t + 1 (and 8 + 2t, 9 + 2t from the
  // second score tile) of head g, exactly its B operand of the V pass when the V k slots map to
  // those tokens.
  static constexpr bool kStreamsDense = true;
  static constexpr int kKUnits = 2 * kScoreUnits;  // pipeline steps over K: two score tiles
  static constexpr int kTileUnits = kKUnits + kVUnits;
  // Steps in flight: two where the build has registers to spare (not the 4-blocks-per-SM one).
  static constexpr int kAhead = kAmpleRegisters ? 2 : 1;
  // The dense stream's ring of step buffers: the fewest slots (at least kAhead + 1) that divide
  // a tile's steps, so each step's slot is fixed at compile time. (kAhead + 1 slots rotated
  // after each step cost 32-41 register moves per tile where they do not divide it.)
  static constexpr int ring_slots(int steps, int at_least) {
    int n = at_least;
    while (steps % n != 0) ++n;
    return n;
  }
  static_assert(kAhead < kTileUnits, "a tile's steps hold the steps in flight (and ring_slots ends)");
  static constexpr int kRing = ring_slots(kTileUnits, kAhead + 1);
  // A K step's MMAs in two accumulation chains (measured faster for dense batches), except
  // where the 8 heads of a 256-wide row leave no registers for the second (it spilled).
  static constexpr bool kTwoKChains = D * GT <= 1024;

  // Pipeline step u of the tile whose rows start at element offset row0 (rows [lo, hi) of it are
  // attended: K rows below lo are read, their logits masked; V rows outside are not read).
  // A step's loads share one 64-bit address of the thread and differ by compile-time offsets,
  // which fold into the load instructions (an address per load cost two instructions each).
  // FP8: the last K step of each half carries the K and V scales of the thread's tokens of that
  // half in its pieces' free words (tile_scales).
  __device__ void load_tile_unit(int u, int64_t row0, int lo, int hi, Bytes16 (&buf)[4]) const {
    const int g = group(), t = thread_in_group();
    if (u < kKUnits) {
      const int half = u / kScoreUnits, un = u % kScoreUnits;
      const char* src = static_cast<const char*>(p.k) + (row0 + g * D + 8 * t) * Base::kElemBytes;  // row g, piece t
      const bool real = half * kScoreTile + g < hi;
#pragma unroll
      for (int i = 0; i < kScoreUnitLoads; ++i) {
        buf[i] = real ? load_piece(src + (half * kScoreTile * D + 32 * (un * kScoreUnitLoads + i)) * Base::kElemBytes)
                      : Bytes16{{0u, 0u, 0u, 0u}};
      }
      if constexpr (Base::kRowScales) {
        static_assert(kScoreUnitLoads >= 2, "a step's free words hold both pairs");
        if (un == kScoreUnits - 1) {
          // Rows 8 half + 2t, + 1 (pairs: tiles start on even rows, so 8-byte aligned). Rows past
          // the tile's end are not read; the rows' masks apply where the scales are used.
          const int r = half * kScoreTile + 2 * t;
          const int64_t at = row0 / D + r;
          const uint2 ks = r < hi ? load_stream8(p.k_scale + at) : make_uint2(0u, 0u);
          const uint2 vs = r < hi ? load_stream8(p.v_scale + at) : make_uint2(0u, 0u);
          buf[0].w[2] = ks.x;
          buf[0].w[3] = ks.y;
          buf[1].w[2] = vs.x;
          buf[1].w[3] = vs.y;
        }
      }
    } else {
      const int s = u - kKUnits;
      const char* src = static_cast<const char*>(p.v) + (row0 + 2 * t * D + 8 * g) * Base::kElemBytes;  // row 2t, piece g
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = (i & 1) + 8 * (i >> 1);  // k slots 2t, 2t + 1, 2t + 8, 2t + 9
        buf[i] = 2 * t + r < hi && 2 * t + r >= lo ? load_piece(src + (r * D + 64 * s) * Base::kElemBytes) : Bytes16{{0u, 0u, 0u, 0u}};
      }
    }
  }

  // FP8, after the last K step of a half: the half's logits (tokens 8 half + 2t, + 1) times their
  // K scales, and the rows' V scales kept for the weights (v_scales[2 half], [2 half + 1]).
  __device__ static void tile_scales(int half, const Bytes16 (&cur)[4], float (&c)[4], float (&v_scales)[4]) {
    if constexpr (Base::kRowScales) {
      const float k0 = __uint_as_float(cur[0].w[2]), k1 = __uint_as_float(cur[0].w[3]);
      const float unscale = CacheElem<DT>::unscale();
      c[0] *= k0 * unscale;
      c[2] *= k0 * unscale;
      c[1] *= k1 * unscale;
      c[3] *= k1 * unscale;
      v_scales[2 * half] = __uint_as_float(cur[1].w[2]);
      v_scales[2 * half + 1] = __uint_as_float(cur[1].w[3]);
    }
  }

  // FP8: the accumulators' frame raised to the tile's largest V scale (attended rows only: an
  // unread row's scale may be anything), and this thread's tokens' scales (2t, 2t + 1, 8 + 2t,
  // 9 + 2t; 0 outside [lo, hi)) over the new frame, the factors of their weights. Returns the
  // accumulators' factor into the new frame. Called by the whole warp (the frame is the warp's).
  __device__ float raise_frame(O& o, const float (&v_scales)[4], int lo, int hi, float (&to_frame)[4]) const {
    const int t = thread_in_group();
    float largest = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = 2 * t + (e & 1) + 8 * (e >> 1);
      to_frame[e] = r < hi && r >= lo ? v_scales[e] : 0.f;
      largest = to_frame[e] > largest ? to_frame[e] : largest;  // (a NaN scale makes its weight NaN)
    }
    largest = fmaxf(largest, shfl_xor(largest, 1));  // the tile's 16 rows
    largest = fmaxf(largest, shfl_xor(largest, 2));
    float ratio = 1.f;
    if (largest > o.frame) {  // (the same for the whole warp; rare once the frame has grown)
      ratio = o.frame / largest;
      o.frame = largest;
      o.inverse = 1.f / largest;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) to_frame[e] *= o.inverse;
    return ratio;
  }

  // A weight times its factor from raise_frame (0 where the row is not attended).
  static __device__ float framed(float w, float to_frame) { return to_frame != 0.f ? w * to_frame : 0.f; }

  __device__ void dense_split(const Q& q, O& o, int64_t begin, int64_t end) {
    const int tiles = static_cast<int>((end - begin + kVTile - 1) / kVTile);
    float m_run = -INFINITY, l_run = 0.f;  // head g's, this warp's (l: this thread's part)
    float c[2][4];
    float v_scales[4] = {};  // FP8: the tile's V scales (tile_scales)
    uint32_t b[kVMmas][2] = {};
    // Step u of every tile uses buf[u % kRing]: kAhead steps in flight beside the one in use, in
    // registers fixed at compile time.
    Bytes16 buf[kRing][4] = {};
    // Where a tile's rows start (a tile lies in one page: pages hold >= 16 tokens, splits start
    // on a page boundary); the page of the warp's next tile is looked up one tile early.
    auto tile_token = [&](int tile) { return begin + static_cast<int64_t>(tile) * kVTile; };
    auto tile_rows = [&](int tile) { return static_cast<int>(end - tile_token(tile) < kVTile ? end - tile_token(tile) : kVTile); };
    int32_t page = warp < tiles ? this->page_entry(tile_token(warp) >> p.page_shift) : 0;
    int lo, hi;  // the tile's attended rows (tile_span)
    if (warp < tiles) {
      this->tile_span(tile_token(warp), tile_rows(warp), lo, hi);
#pragma unroll
      for (int a = 0; a < kAhead; ++a) load_tile_unit(a, this->page_row_offset(page, tile_token(warp)), lo, hi, buf[a]);
    }
    for (int tile = warp; tile < tiles; tile += kWarps) {
      const int64_t token = tile_token(tile);
      const int64_t row0 = this->page_row_offset(page, token);
      const bool more = tile + kWarps < tiles;
      const int32_t next_page = more ? this->page_entry(tile_token(tile + kWarps) >> p.page_shift) : 0;
      const int64_t next_row0 = this->page_row_offset(next_page, tile_token(tile + kWarps));
      int next_lo = 0, next_hi = 0;
      if (more) this->tile_span(tile_token(tile + kWarps), tile_rows(tile + kWarps), next_lo, next_hi);
#pragma unroll
      for (int u = 0; u < kTileUnits; ++u) {
        if (u + kAhead < kTileUnits) {
          load_tile_unit(u + kAhead, row0, lo, hi, buf[(u + kAhead) % kRing]);
        } else if (more) {
          load_tile_unit(u + kAhead - kTileUnits, next_row0, next_lo, next_hi, buf[(u + kAhead) % kRing]);
        }
        const Bytes16(&cur)[4] = buf[u % kRing];
        if (u < kKUnits) {
          const int half = u / kScoreUnits, un = u % kScoreUnits;
          if (un == 0) c[half][0] = c[half][1] = c[half][2] = c[half][3] = 0.f;
          if constexpr (kTwoKChains) {
            // Two accumulation chains of half the depth: a step's second k-steps go to c_odd.
            float c_odd[4] = {0.f, 0.f, 0.f, 0.f};
            multiply_k(c[half], c_odd, q, un, cur);
#pragma unroll
            for (int r = 0; r < 4; ++r) c[half][r] += c_odd[r];
          } else {
            multiply_k(c[half], c[half], q, un, cur);
          }
          if (un == kScoreUnits - 1) tile_scales(half, cur, c[half], v_scales);
          if (u == kKUnits - 1) online_softmax(q, c, v_scales, lo, hi, m_run, l_run, b, o);
        } else {
          multiply_v(o.c[u - kKUnits], cur, b);
        }
      }
      page = next_page;
      lo = next_lo;
      hi = next_hi;
    }
    merge_warps(o, m_run, l_run);
    if (threadIdx.x == 0) {
      sh.blocks = begin < end ? static_cast<int32_t>((end - begin + p.page_tokens - 1) / p.page_tokens) : 0;
      sh.skipped = 0;
    }
  }

  // A tile's logits from the score C fragments (head g, tokens 2t, 2t + 1, 8 + 2t, 9 + 2t;
  // soft-capped where the step asks; rows outside [lo, hi) -inf) and the tile's largest logit of
  // head g.
  __device__ float tile_logits(const Q& q, const float (&c)[2][4], int lo, int hi, float (&s)[4]) const {
    const int t = thread_in_group();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      s[2 * half] = c[half][0] + c[half][2];
      s[2 * half + 1] = c[half][1] + c[half][3];
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if constexpr (kPacked) s[e] += shfl_xor(s[e], 16);  // the middle terms' rows
      const int r = 2 * t + (e & 1) + 8 * (e >> 1);
      s[e] = r < hi && r >= lo ? soft_cap(s[e] * q.unscale, p.logit_soft_cap) : -INFINITY;
    }
    float m_tile = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
    m_tile = fmaxf(m_tile, shfl_xor(m_tile, 1));  // the head's 4 threads
    m_tile = fmaxf(m_tile, shfl_xor(m_tile, 2));
    return m_tile;
  }

  // The accumulators into the frame of a new running maximum (alpha: the factor of this thread's
  // group's head), skipped where no head's maximum moved. The accumulators hold columns 2t and
  // 2t + 1, whose factors live in groups 2t and 2t + 1.
  __device__ void rescale_where_moved(O& o, float alpha) const {
    if (warp_ballot(alpha != 1.f)) {
      const int t = thread_in_group();
      scale_heads(o, shfl(alpha, 8 * t), shfl(alpha, 8 * t + 4));
    }
  }

  // A tile's logits (head g, tokens 2t, 2t + 1, 8 + 2t, 9 + 2t) into the warp's running max and
  // sum, the accumulators rescaled, and the weights (FP8: times their V scales) as the B operand
  // of the V steps.
  __device__ void online_softmax(const Q& q, const float (&c)[2][4], const float (&v_scales)[4], int lo, int hi, float& m_run,
                                 float& l_run, uint32_t (&b)[kVMmas][2], O& o) const {
    const int g = group();
    float s[4];
    const float m_tile = tile_logits(q, c, lo, hi, s);
    const float m_new = fmaxf(m_run, m_tile);
    const float m_frame = m_new == -INFINITY ? 0.f : m_new;  // (a tile outside the window, first)
    const bool live = column_head(g) < GT;
    const float alpha = live ? sr::rescale(m_run, m_new) : 1.f;
    m_run = m_new;
    float w[4];
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      w[e] = live ? __expf(s[e] - m_frame) : 0.f;
      sum += w[e];
    }
    l_run = l_run * alpha + sum;
    float to_o = alpha;
    if constexpr (Base::kRowScales) {
      float to_frame[4];
      to_o *= raise_frame(o, v_scales, lo, hi, to_frame);
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = framed(w[e], to_frame[e]);
    }
    weight_operands(b, w);
    rescale_where_moved(o, to_o);
  }

  // The warps' (m, l, o) to the block's common maximum: sh.m and sh.l hold the split's state and
  // every warp's accumulators are in its frame, ready for reduce_to_shared.
  __device__ void merge_warps(O& o, float m_run, float l_run) {
    const int g = group(), t = thread_in_group();
    l_run += shfl_xor(l_run, 1);
    l_run += shfl_xor(l_run, 2);
    float(&warp_m)[kMaxTileHeads][kMaxChunkBlocks] = sh.block_max;  // [head][warp]
    float(&warp_l)[kMaxTileHeads][kMaxChunkBlocks] = sh.block_sum;
    if (t == 0 && g < GT) {
      warp_m[g][warp] = m_run;
      warp_l[g][warp] = l_run;
    }
    __syncthreads();
    float scale[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int h = column_head(2 * t + i);
      float m = -INFINITY;
      if (h < GT) {
        for (int w = 0; w < kWarps; ++w) m = fmaxf(m, warp_m[h][w]);
      }
      scale[i] = h < GT ? sr::rescale(warp_m[h][warp], m) : 0.f;
    }
    if constexpr (Base::kRowScales) {
      // Each warp's frame into its accumulators: the split's state leaves in frame 1
      // (output_factor applies the widened codes' factor).
      scale[0] *= o.frame;
      scale[1] *= o.frame;
      o.frame = 1.f;
    }
    scale_heads(o, scale[0], scale[1]);
    if (threadIdx.x < GT) {
      const int h = threadIdx.x;
      float m = -INFINITY, l = 0.f;
      for (int w = 0; w < kWarps; ++w) m = fmaxf(m, warp_m[h][w]);
      for (int w = 0; w < kWarps; ++w) l += warp_l[h][w] * sr::rescale(warp_m[h][w], m);
      sh.m[h] = m;
      sh.l[h] = l;
    }
    __syncthreads();
  }
};

}  // namespace sr::gpu
