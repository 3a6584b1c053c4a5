// Tau splits over 16-token pages on tensor cores, streamed (one long sequence): each warp decides
// per tile whether V is read, and K streams on without a bubble. The full tensor-core passes class
// (TensorCorePasses) is this layer over the dense stream over the chunked passes.
#pragma once

#include "tensor_core_dense_stream.cuh"

namespace sr::gpu {

template <int DT, int D, int GT, bool kAmpleRegisters>
struct TensorCorePasses : TensorCoreDenseStream<DT, D, GT, kAmpleRegisters> {
  using Dense = TensorCoreDenseStream<DT, D, GT, kAmpleRegisters>;
  using Base = typename Dense::Base;
  using Dense::Dense;
  using typename Dense::Q;
  using typename Dense::O;
  using Dense::kScoreUnits;
  using Dense::kVTile;
  using Dense::kVUnits;
  using Dense::kVMmas;
  using Dense::column_head;
  using Dense::group;
  using Dense::thread_in_group;
  using Dense::rescale;
  using Dense::multiply_k;
  using Dense::weight_operands;
  using Dense::multiply_v;
  using Dense::lane;
  using Dense::p;
  using Dense::sh;
  using Dense::warp;
  using Dense::kKUnits;
  using Dense::kAhead;
  using Dense::load_tile_unit;
  using Dense::dense_split;
  using Dense::tile_logits;
  using Dense::rescale_where_moved;
  using Dense::merge_warps;
  using Dense::tile_scales;
  using Dense::raise_frame;
  using Dense::framed;
  static constexpr bool kStreamsTau = true;

  // ---- Tau splits over 16-token pages, streamed (one long sequence: the host's rule).
  // A tile is then a whole block, so each warp decides alone, as route_chunk does: V of a tile
  // whose logits sit more than p.tau below the anchor's reference (sh.m_ref, from score_anchor)
  // for every head is not read. The warp walks one pipeline of steps, kAhead in flight: the K
  // steps of tile j, then the V steps of tile j - 1 if it was kept. V lags one tile so a tile's
  // decision comes before its V loads are issued, and a skipped tile leaves the pipeline: K
  // streams on without a bubble. The step logic runs at run time, which costs where most V is
  // read, so dense splits keep dense_split and short or batched tau steps the chunked passes
  // (the host's rule: launch planning).

  // A warp's running softmax state over its tiles (this thread's part of the sums: head g).
  struct Stream {
    float m = -INFINITY, l = 0.f, skipped_l = 0.f, skipped_err = 0.f;
    float w_prev[4] = {0.f, 0.f, 0.f, 0.f};  // weights of the tile whose V steps come next (FP8: framed)
  };

  // A position in the warp's pipeline: tile j (warp-local) and step u (u < kKUnits: K step u of
  // tile j; else V step u - kKUnits of tile j - 1).
  struct Step {
    int j, u;
  };

  __device__ void tau_stream_split(const Q& q, O& o, int64_t begin, int64_t end, const AnchorSet& anchor) {
    const int tiles = static_cast<int>((end - begin + kVTile - 1) / kVTile);
    // This warp's tiles are warp + j * kWarps, j < mine; tile `mine` is empty (no rows): its K
    // steps load nothing and it closes the sequence with the V steps of the last real tile.
    const int mine = warp < tiles ? (tiles - warp + kWarps - 1) / kWarps : 0;
    auto token_of = [&](int j) { return begin + static_cast<int64_t>(warp + j * kWarps) * kVTile; };
    auto rows_of = [&](int j) { return j < mine ? static_cast<int>(end - token_of(j) < kVTile ? end - token_of(j) : kVTile) : 0; };
    auto page_of = [&](int j) { return j < mine ? this->page_entry(token_of(j) >> p.page_shift) : 0; };
    // A tile's rows [lo, hi) inside the window (tile_span), looked up where used: registers are short.
    auto load_rows = [&](int j, int64_t row0, int u, Bytes16(&buf)[4]) {
      int lo, hi;
      this->tile_span(token_of(j), rows_of(j), lo, hi);
      load_tile_unit(u, row0, lo, hi, buf);
    };
    const int g = group();
    const float m_ref = g < GT ? sh.m_ref[g] : 0.f;
    uint32_t kept = 0;  // bit t % 32: tile t's V is read (decided kKUnits steps before it loads)
    auto v_follows = [&](int j) { return j >= 1 && ((kept >> ((j - 1) & 31)) & 1u); };
    auto next = [&](Step s) {
      ++s.u;
      if ((s.u == kKUnits && !v_follows(s.j)) || s.u == kKUnits + kVUnits) {
        ++s.j;
        s.u = 0;
      }
      return s;
    };

    // The loader's pages (tiles j - 1, j, and j + 1 looked up one tile early, so no lookup
    // waits) and V-norm summaries (by tile parity: the loader runs at most one tile ahead).
    Step ls{0, 0};
    int32_t page_prev = 0, page_cur = page_of(0), page_next = page_of(1);
    float vnorm_even = 0.f, vnorm_odd = 0.f;
    auto enter_tile = [&](int j) {
      if (j < mine) {
        const float vn = p.vnorm[static_cast<int64_t>(page_cur) * p.kv_heads + this->kv_head];
        if (j & 1) {
          vnorm_odd = vn;
        } else {
          vnorm_even = vn;
        }
      }
    };
    auto load = [&](Bytes16(&buf)[4]) {
      if (ls.u < kKUnits) {
        load_rows(ls.j, this->page_row_offset(page_cur, token_of(ls.j)), ls.u, buf);
      } else {
        load_rows(ls.j - 1, this->page_row_offset(page_prev, token_of(ls.j - 1)), ls.u, buf);
      }
    };
    auto advance_loader = [&] {
      const int j = ls.j;
      ls = next(ls);
      if (ls.j != j) {
        page_prev = page_cur;
        page_cur = page_next;
        page_next = page_of(ls.j + 1);
        enter_tile(ls.j);
      }
    };

    Stream st;
    float c[2][4] = {};
    float w[4];
    float v_scales[4] = {};  // FP8: the tile's V scales (tile_scales)
    uint32_t b[kVMmas][2] = {};
    int skipped = 0;
    // buf[0]: the step in use; buf[1 .. kAhead]: the next steps, in flight.
    Bytes16 buf[kAhead + 1][4] = {};
    if (mine > 0) {
      enter_tile(0);
#pragma unroll
      for (int a = 0; a < kAhead; ++a) {
        if (a > 0) advance_loader();
        load(buf[a]);
      }
    }
    for (Step cs{0, 0}; mine > 0 && cs.j <= mine; cs = next(cs)) {
      advance_loader();
      if (ls.j <= mine) load(buf[kAhead]);
      const Bytes16(&cur)[4] = buf[0];
      if (cs.u < kKUnits) {
        const int half = cs.u / kScoreUnits, un = cs.u % kScoreUnits;
#pragma unroll
        for (int h = 0; h < 2; ++h) {  // (compile-time indices into c's registers)
          if (h == half) {
            if (un == 0) c[h][0] = c[h][1] = c[h][2] = c[h][3] = 0.f;
            multiply_k(c[h], c[h], q, un, cur);
            if (un == kScoreUnits - 1) tile_scales(h, cur, c[h], v_scales);
          }
        }
        if (cs.u == kKUnits - 1) {
          // Tile j's logits are complete: softmax, the decision, then the weights of tile j - 1
          // (rescaled with the accumulators) become the B operand of the V steps that follow.
          const int j = cs.j;
          int lo, hi;
          this->tile_span(token_of(j), rows_of(j), lo, hi);
          const float m_tile = tau_online_softmax(q, c, v_scales, lo, hi, st, w, o);
          if (j < mine) {
            const int64_t token = token_of(j);
            bool keep = true;
            if (!range_touches_anchor(token, token + rows_of(j), anchor)) {
              const bool head_skips = g >= this->valid_heads || tau_skips(m_tile, fmaxf(m_ref, st.m), p.tau);
              keep = warp_ballot(!head_skips) != 0u;
            }
            const uint32_t bit = 1u << (j & 31);
            kept = keep ? kept | bit : kept & ~bit;
            if (!keep) {
              const float sum = w[0] + w[1] + w[2] + w[3];
              st.skipped_l += sum;
              st.skipped_err += sum * ((j & 1) ? vnorm_odd : vnorm_even);
              ++skipped;
            }
          }
          if (v_follows(j)) {
            float prev[4] = {st.w_prev[0], st.w_prev[1], st.w_prev[2], st.w_prev[3]};
            weight_operands(b, prev);
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) st.w_prev[e] = Base::kRowScales ? framed(w[e], v_scales[e]) : w[e];  // (FP8: the factors)
        }
      } else {
#pragma unroll
        for (int s = 0; s < kVUnits; ++s) {
          if (s == cs.u - kKUnits) multiply_v(o.c[s], cur, b);
        }
      }
#pragma unroll
      for (int a = 0; a < kAhead; ++a) {
#pragma unroll
        for (int i = 0; i < 4; ++i) buf[a][i] = buf[a + 1][i];
      }
    }
    if (lane == 0 && skipped > 0) atomicAdd(&sh.skipped, skipped);
    if (threadIdx.x == 0) sh.blocks = begin < end ? static_cast<int32_t>((end - begin + p.page_tokens - 1) / p.page_tokens) : 0;
    // The warps' skipped mass and error go through the logit buffer (free while a split streams)
    // and join the merge in the frame merge_warps leaves in sh.m; warp_m (sh.block_max) holds each
    // warp's maximum.
    float skipped_sums[2] = {st.skipped_l, st.skipped_err};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      skipped_sums[i] += shfl_xor(skipped_sums[i], 1);
      skipped_sums[i] += shfl_xor(skipped_sums[i], 2);
    }
    float(&warp_skipped)[kMaxTileHeads][kLogitStride] = sh.w;  // [head][2 * warp + i]
    if (thread_in_group() == 0 && g < GT) {
      warp_skipped[g][2 * warp] = skipped_sums[0];
      warp_skipped[g][2 * warp + 1] = skipped_sums[1];
    }
    merge_warps(o, st.m, st.l);  // (its barriers order the writes above and the reads below)
    if (threadIdx.x < GT) {
      const int h = threadIdx.x;
      float skl = 0.f, ske = 0.f;
      for (int w = 0; w < kWarps; ++w) {
        const float c = sr::rescale(sh.block_max[h][w], sh.m[h]);
        skl += warp_skipped[h][2 * w] * c;
        ske += warp_skipped[h][2 * w + 1] * c;
      }
      sh.skipped_l[h] = skl;
      sh.skipped_err[h] = ske;
    }
    __syncthreads();
  }

  // A tile's logits (head g, tokens 2t, 2t + 1, 8 + 2t, 9 + 2t) into the warp's running max and
  // sums, the accumulators and the pending weights rescaled; w: the tile's weights. FP8: the frame
  // is raised to the tile's V scales, which v_scales returns over the new frame (the factors of
  // w for the V steps, raise_frame). Returns the tile's largest logit of head g.
  __device__ float tau_online_softmax(const Q& q, const float (&c)[2][4], float (&v_scales)[4], int lo, int hi, Stream& st,
                                     float (&w)[4], O& o) const {
    const int g = group();
    float s[4];
    const float m_tile = tile_logits(q, c, lo, hi, s);
    const float m_new = fmaxf(st.m, m_tile);
    const float m_frame = m_new == -INFINITY ? 0.f : m_new;  // (a tile outside the window, first)
    const bool live = column_head(g) < GT;
    const float alpha = live ? sr::rescale(st.m, m_new) : 1.f;
    st.m = m_new;
    float to_o = alpha;  // the accumulators' (and the pending framed weights') factor
    if constexpr (Base::kRowScales) {
      float to_frame[4];
      to_o *= raise_frame(o, v_scales, lo, hi, to_frame);
#pragma unroll
      for (int e = 0; e < 4; ++e) v_scales[e] = to_frame[e];
    }
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      w[e] = live ? __expf(s[e] - m_frame) : 0.f;
      sum += w[e];
      st.w_prev[e] *= to_o;
    }
    st.l = st.l * alpha + sum;
    st.skipped_l *= alpha;
    st.skipped_err *= alpha;
    rescale_where_moved(o, to_o);
    return m_tile;
  }
};

}  // namespace sr::gpu
