// q.K and w.V on tensor cores (mma.sync m16n8k16): the passes of bf16, f16 and FP8 caches on
// CUDA.
// A CUDA-core pass spends most of its issue slots on FMAs and shuffles (bench/NOTES.md, the
// profile); here a warp's MMA does the arithmetic of 8-16 rows at once and no lane waits on a
// shuffle chain.
//
// Loads go straight from global memory into MMA operands, 16 bytes per thread. A dot product's
// order of k is free, so a thread's 16-byte piece of a K row is its B operand for two k-steps,
// and q's A operand is built once with the same permutation. For w.V the k index is the token:
// a thread loads the same 16-byte piece of 4 tokens and interleaves them with byte permutes.
// q and the weights are f32; they enter as a sum of 16-bit terms (tensor_core.cuh) placed in
// spare rows of the A operand (q), spare columns of the B operand (the weights) or summed by
// repeated MMAs, so the result keeps f32 precision.
//
// FP8 rows load 8 bytes where 16-bit rows load 16 (the same elements per thread) and are widened
// to f16 operands at use (mma_elements). A row's scale multiplies its logit in f32 (K), and its
// weight before the V MMA (V): weight * scale must fit f16's range as the weights <= 1 do, so
// the accumulators carry a frame F (O::frame), the largest V scale among the rows accumulated so
// far, and the weights enter as w * scale / F <= 1. A larger scale raises F and rescales the
// accumulators, as a larger logit raises the softmax maximum (docs/ARCHITECTURE.md, "FP8 on
// tensor cores").
#pragma once

#include <float.h>

#include "block_base.cuh"
#include "shared_arithmetic/softmax_state.h"
#include "tensor_core.cuh"

namespace sr::gpu {

template <int DT, int D, int GT, bool kAmpleRegisters>
struct TensorCoreChunkedPasses : BlockBase<DT, D, GT, kAmpleRegisters> {
  using Base = BlockBase<DT, D, GT, kAmpleRegisters>;
  using Mma = MmaOps<DT>;
  using Base::Base;
  using Base::lane;
  using Base::p;
  using Base::reduce;
  using Base::sh;
  using Base::warp;
  static_assert(GT <= 8, "a tile's heads fill at most the MMA's 8 columns (or 8 rows)");

  // Score pass: logits of a tile of 8 tokens (the MMA's n) for the tile's heads (its rows).
  // Thread (g, t) = (lane / 4, lane % 4) loads the pieces t + 4j of token g's row.
  static constexpr int kScoreTile = 8;
  static constexpr int kScoreLoads = D / 32;  // pieces of a row per thread
  static constexpr int kScoreUnitLoads = kScoreLoads < 4 ? kScoreLoads : 4;  // per pipeline step
  static constexpr int kScoreUnits = kScoreLoads / kScoreUnitLoads;          // steps per tile
  static constexpr int kLoadBytes = Base::kRowScales ? 8 : 16;               // bytes of a piece
  static constexpr int kUnitLines = kScoreUnitLoads * 4 * kLoadBytes >= 256 ? kScoreUnitLoads * 4 * kLoadBytes / 128 : 1;  // 128-byte lines of a row per step
  // q's terms as A rows. Three terms of at most 4 heads share one A operand: rows 0-3 hold the
  // high terms, 4-7 the middle ones, 8-11 the low ones (the middle term's dot product is fetched
  // from lane + 16). Otherwise operand f holds term 2f in rows 0-7 and term 2f + 1 in rows 8-15.
  static constexpr bool kPacked = Mma::kTerms == 3 && GT <= 4;
  static constexpr int kQOperands = kPacked ? 1 : (Mma::kTerms + 1) / 2;

  // V pass: a tile of 16 tokens (the MMA's k) times 16 dims (its m) per MMA for 8 heads (its n).
  // In pipeline step s of a tile, thread (g, t) loads piece 8s + g of tokens 4t .. 4t + 3.
  static constexpr int kVTile = 16;
  static constexpr int kVUnits = D / 64;
  // With at most 4 heads the weights' terms share the MMA's 8 columns: column c of MMA j holds
  // term 2j + c / 4 of head c % 4, so three terms take two MMAs, not three (fewer instructions
  // and a shorter chain per byte of V). The two column halves are summed once per split
  // (reduce_to_shared). Only with q packed (kPacked): then the threads of rows g and g + 4 both
  // hold head g % 4's logits (tile_logits), so each builds its own column's weights.
  static constexpr bool kPackedWeights = kPacked;
  static constexpr int kVMmas = kPackedWeights ? (Mma::kTerms + 1) / 2 : Mma::kTerms;
  // The head whose weights column c (or the B operand of row group g) carries.
  static __device__ int column_head(int c) { return kPackedWeights ? c & 3 : c; }

  // q's A operands live in shared memory (the block's heads are the same for every warp), one
  // 16-byte operand per lane and (piece j, half h, operand f): lane-major, so no bank is shared.
  // In registers they would take 32-64 of them, which the load pipeline needs more.
  static constexpr int kQOperandCount = kScoreLoads * 2 * kQOperands;
  // The block's shared buffer for them, declared by the kernel (a function-local __shared__
  // array of a pass class used by two kernels becomes a module-level symbol and moves the
  // kernel's shared layout: ptxas then spilled more and the dense stream slowed; bench/NOTES.md).
  static constexpr int kQSharedSlots = kQOperandCount * kWarp;
  struct Q {
    const uint4* operands;  // [kQOperandCount][kWarp]
    float unscale;          // 2^-shift of the f16 scaling (else 1)
    struct Operand {
      uint32_t r[4];
    };
    __device__ Operand operand(int j, int h, int f, int lane) const {
      const uint4 v = operands[((j * 2 + h) * kQOperands + f) * kWarp + lane];
      return Operand{{v.x, v.y, v.z, v.w}};
    }
  };
  struct O {
    float c[kVUnits][4][4];  // C fragments: dims 8(8s + g) + 2u (+1) x columns 2t, 2t + 1 (column_head)
    float frame;             // FP8: the V scale the weights were divided by (0: none yet); else unused
    float inverse;           // FP8: 1 / frame (0 while frame is 0)
  };
  // FP8: the chunk's V scales, written by the K pass (which carries them in its loads' free words)
  // for scale_weights; the kernel declares the buffer (kSharedVScales) and sets the pointer.
  static constexpr bool kSharedVScales = Base::kRowScales;
  float* v_scale_rows = nullptr;  // [kChunk] shared

  __device__ int group() const { return lane >> 2; }
  __device__ int thread_in_group() const { return lane & 3; }

  // Builds q's operands into `operands` (kQSharedSlots; warp 0 stores them; the caller
  // synchronises before the first pass).
  __device__ void load_q(Q& q, int64_t q_row0, uint4* operands) const {
    const int g = group(), t = thread_in_group();
    const int head = kPacked ? (g & 3) : g;
    const bool live = head < this->valid_heads;
    float x[kScoreLoads][8];
    float loaded[kScoreLoads * 8];  // pieces t + 4j of the head's row
    load_many(p.q, p.q_dtype, live, [&](int i) { return q_row0 + head * D + 8 * (t + 4 * (i / 8)) + i % 8; }, loaded);
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < kScoreLoads; ++j) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        x[j][e] = loaded[8 * j + e] * p.scale;
        amax = fmaxf(amax, fabsf(x[j][e]));
      }
    }
    int shift = 0;
    if constexpr (Mma::kScaleQ) {
      amax = fmaxf(amax, shfl_xor(amax, 1));  // the head's 4 threads
      amax = fmaxf(amax, shfl_xor(amax, 2));
      if (amax > 0.f && amax <= FLT_MAX) {
        int e;
        frexpf(amax, &e);
        shift = 11 - e;
      }
    }
    q.unscale = ldexpf(1.f, -shift);
    // Which term each A row of this thread carries (-1: none).
    const int term_row = kPacked ? (g < 4 ? 0 : 1) : 0;
    const int term_row8 = kPacked ? (g < 4 ? 2 : -1) : 1;
#pragma unroll
    for (int j = 0; j < kScoreLoads; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) v[e] = Mma::kScaleQ ? ldexpf(x[j][4 * h + e], shift) : x[j][4 * h + e];
        uint32_t first[Mma::kTerms], second[Mma::kTerms];  // terms of dims (d, d + 1) and (d + 2, d + 3)
#pragma unroll
        for (int i = 0; i < Mma::kTerms; ++i) {
          first[i] = Mma::take(v[0], v[1]);
          second[i] = Mma::take(v[2], v[3]);
        }
#pragma unroll
        for (int f = 0; f < kQOperands; ++f) {
          const uint4 a = make_uint4(term(first, term_row + 2 * f), term(first, term_row8 < 0 ? -1 : term_row8 + 2 * f),
                                     term(second, term_row + 2 * f), term(second, term_row8 < 0 ? -1 : term_row8 + 2 * f));
          if (warp == 0) operands[((j * 2 + h) * kQOperands + f) * kWarp + lane] = a;
        }
      }
    }
    q.operands = operands;
  }

  static __device__ uint32_t term(const uint32_t (&terms)[Mma::kTerms], int i) {
    uint32_t r = 0;
#pragma unroll
    for (int k = 0; k < Mma::kTerms; ++k) r = i == k ? terms[k] : r;
    return r;
  }

  __device__ void clear(O& o) const {
    o.frame = 0.f;
    o.inverse = 0.f;
#pragma unroll
    for (int s = 0; s < kVUnits; ++s) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
#pragma unroll
        for (int r = 0; r < 4; ++r) o.c[s][u][r] = 0.f;
      }
    }
  }

  // Multiplies this thread's accumulators of column 2t by a0 and of column 2t + 1 by a1.
  static __device__ void scale_heads(O& o, float a0, float a1) {
#pragma unroll
    for (int s = 0; s < kVUnits; ++s) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        o.c[s][u][0] *= a0;
        o.c[s][u][1] *= a1;
        o.c[s][u][2] *= a0;
        o.c[s][u][3] *= a1;
      }
    }
  }

  // The accumulators into the frame of the chunk's new running maximum.
  __device__ void rescale(O& o) const {
    const int t = thread_in_group();
    const int h0 = column_head(2 * t), h1 = column_head(2 * t + 1);
    scale_heads(o, h0 < GT ? sh.alpha[h0] : 0.f, h1 < GT ? sh.alpha[h1] : 0.f);
  }

  // One piece of a row (16 bytes; FP8: 8, in the first two words).
  template <bool kWideFetch = true>
  static __device__ Bytes16 load_piece(const char* src) {
    if constexpr (Base::kRowScales) {
      const uint2 v = load_stream8<kWideFetch>(src);
      return Bytes16{{v.x, v.y, 0u, 0u}};
    } else {
      return load_stream16<kWideFetch>(src);
    }
  }

  // Step `unit` of a score tile: k's pieces t + 4j (8 elements each) are the B operands of two
  // k-steps each, the first into c0 and the second into c1 (the same array: one accumulation chain).
  template <int N>
  __device__ void multiply_k(float (&c0)[4], float (&c1)[4], const Q& q, int unit, const Bytes16 (&k)[N]) const {
    static_assert(N >= kScoreUnitLoads, "a step's pieces");
#pragma unroll
    for (int i = 0; i < kScoreUnitLoads; ++i) {
      const Bytes16 e = mma_elements<DT>(k[i]);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int f = 0; f < kQOperands; ++f) {
          Mma::mma(h == 0 ? c0 : c1, q.operand(unit * kScoreUnitLoads + i, h, f, lane).r, e.w[2 * h], e.w[2 * h + 1]);
        }
      }
    }
  }

  // Pass 1: logits of tokens [t0, t0 + n) (n <= kChunk) for every head of the tile. Warp w
  // takes tiles w, w + 4, ...; the next step's pieces load while the current one multiplies.
  // FP8: a tile's last step also loads the K and V scales of the thread's tokens 2t, 2t + 1 into
  // its pieces' free words: the K scales multiply the logits, the V scales go to v_scale_rows.
  __device__ void score(const Q& q, int64_t t0, int n, int32_t first_page, const NextRows* then = nullptr) {
    const char* kbase = static_cast<const char*>(p.k);
    const int g = group(), t = thread_in_group();
    const int tiles = (n + kScoreTile - 1) / kScoreTile;
    const int units = warp < tiles ? (tiles - warp + kWarps - 1) / kWarps * kScoreUnits : 0;
    float c[2][4] = {};
    auto load = [&](int k, Bytes16(&buf)[kScoreUnitLoads]) {
      const int tile = warp + k / kScoreUnits * kWarps, unit = k % kScoreUnits;
      const int row = tile * kScoreTile + g;
      if (row < n) {
        const char* src = kbase + this->row_offset(t0 + row, first_page) * Base::kElemBytes;
#pragma unroll
        for (int i = 0; i < kScoreUnitLoads; ++i) buf[i] = load_piece<Base::kChunkWideFetch>(src + (t + 4 * (unit * kScoreUnitLoads + i)) * kLoadBytes);
      } else {
#pragma unroll
        for (int i = 0; i < kScoreUnitLoads; ++i) buf[i] = Bytes16{{0u, 0u, 0u, 0u}};
      }
      if constexpr (Base::kRowScales) {
        static_assert(kScoreUnitLoads >= 2, "a step's free words hold both pairs");
        const int scaled = tile * kScoreTile + 2 * t;  // (even, and a pair never leaves its page)
        if (unit == kScoreUnits - 1 && scaled < n) {
          const int64_t at = this->row_offset(t0 + scaled, first_page) / D;
          const uint2 ks = load_stream8(p.k_scale + at), vs = load_stream8(p.v_scale + at);
          buf[0].w[2] = ks.x;
          buf[0].w[3] = ks.y;
          buf[1].w[2] = vs.x;
          buf[1].w[3] = vs.y;
        }
      }
      if (this->prefetching(then) && lane < kScoreTile * kUnitLines) {
        this->prefetch_line(kbase, t0, n, first_page, false, then, tile * kScoreTile + lane / kUnitLines + p.prefetch_rows,
                            (unit * kUnitLines + lane % kUnitLines) * 128);
      }
    };
    auto use = [&](int k, const Bytes16(&buf)[kScoreUnitLoads]) {
      const int tile = warp + k / kScoreUnits * kWarps, unit = k % kScoreUnits;
      if (unit == 0) {
#pragma unroll
        for (int h = 0; h < 2; ++h) c[h][0] = c[h][1] = c[h][2] = c[h][3] = 0.f;
      }
      multiply_k(c[0], c[1], q, unit, buf);
      if (unit == kScoreUnits - 1) {
        // Rows g and g + 8 of the C fragment, tokens 2t and 2t + 1.
        float s0 = c[0][0] + c[0][2] + c[1][0] + c[1][2];
        float s1 = c[0][1] + c[0][3] + c[1][1] + c[1][3];
        if constexpr (kPacked) {
          s0 += shfl_xor(s0, 16);
          s1 += shfl_xor(s1, 16);
        }
        const int row = tile * kScoreTile + 2 * t;
        if constexpr (Base::kRowScales) {
          const float unscale = CacheElem<DT>::unscale();
          s0 *= __uint_as_float(buf[0].w[2]) * unscale;
          s1 *= __uint_as_float(buf[0].w[3]) * unscale;
          if (g == 0) {
            if (row < n) v_scale_rows[row] = __uint_as_float(buf[1].w[2]);
            if (row + 1 < n) v_scale_rows[row + 1] = __uint_as_float(buf[1].w[3]);
          }
        }
        if (g < GT) {
          if (row < n) sh.w[g][row] = s0 * q.unscale;
          if (row + 1 < n) sh.w[g][row + 1] = s1 * q.unscale;
        }
      }
    };
    pipelined<kScoreUnitLoads>(units, load, use);
  }

  // B operand of the V pass: the weights of tokens 4t .. 4t + 3 of the tile for head g, as terms.
  __device__ void load_weights(uint32_t (&b)[kVMmas][2], int tile, int n) const {
    const int g = group(), t = thread_in_group();
    const int row = tile * kVTile + 4 * t;
    const int head = column_head(g);
    float w[4] = {0.f, 0.f, 0.f, 0.f};
    if (head < GT) {
      if (row + 4 <= n) {
        const float4 v = *reinterpret_cast<const float4*>(&sh.w[head][row]);
        w[0] = v.x;
        w[1] = v.y;
        w[2] = v.z;
        w[3] = v.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) w[e] = row + e < n ? sh.w[head][row + e] : 0.f;
      }
    }
    weight_operands(b, w);
  }

  // The B operand of the V MMA from a thread's 4 weights (k slots 2t, 2t + 1, 2t + 8, 2t + 9):
  // scaled, then split into 16-bit terms, one MMA each (packed: this column's terms).
  __device__ void weight_operands(uint32_t (&b)[kVMmas][2], float (&w)[4]) const {
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] *= Mma::kWeightScale;
    // Packed, each term goes to its MMA as it is made (upper columns: terms 1, 3, ...). Making
    // them all first and selecting with term() spilled the 4-blocks build (36 -> 60 bytes).
    const bool upper = kPackedWeights && group() >= 4;
#pragma unroll
    for (int i = 0; i < Mma::kTerms; ++i) {
      const uint32_t first = Mma::take(w[0], w[1]), second = Mma::take(w[2], w[3]);
      if constexpr (kPackedWeights) {
        if ((i & 1) == 0) {  // (a lower column's term, or zero for an upper one past the last)
          b[i / 2][0] = upper ? 0u : first;
          b[i / 2][1] = upper ? 0u : second;
        } else if (upper) {
          b[i / 2][0] = first;
          b[i / 2][1] = second;
        }
      } else {
        b[i][0] = first;
        b[i][1] = second;
      }
    }
  }

  // acc += V^T w for one step: v holds one 16-byte piece of the 4 tokens of k slots 2t, 2t + 1,
  // 2t + 8, 2t + 9; A rows g, g + 8 are dims 2u, 2u + 1 of the piece; b holds the weights' terms.
  static __device__ void multiply_v(float (&acc)[4][4], const Bytes16 (&loaded)[4], const uint32_t (&b)[kVMmas][2]) {
    if constexpr (Base::kRowScales) {
      const Bytes16 v[4] = {mma_elements<DT>(loaded[0]), mma_elements<DT>(loaded[1]), mma_elements<DT>(loaded[2]),
                            mma_elements<DT>(loaded[3])};
      multiply_v_elements(acc, v, b);
    } else {
      multiply_v_elements(acc, loaded, b);  // (no copy: a copy cost the 4-blocks build spills)
    }
  }

  static __device__ void multiply_v_elements(float (&acc)[4][4], const Bytes16 (&v)[4], const uint32_t (&b)[kVMmas][2]) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const uint32_t a[4] = {low_halves(v[0].w[u], v[1].w[u]), high_halves(v[0].w[u], v[1].w[u]),
                             low_halves(v[2].w[u], v[3].w[u]), high_halves(v[2].w[u], v[3].w[u])};
#pragma unroll
      for (int i = 0; i < kVMmas; ++i) Mma::mma(acc[u], a, b[i][0], b[i][1]);
    }
  }

  // Pass 2: o += w * V over tokens [t0, t0 + n), leaving out skipped blocks and the rows before
  // `first` (outside the window). A tile of 16 tokens lies in one block (pages hold at least 16
  // tokens), so it is read or skipped whole.
  __device__ void accumulate(O& o, int64_t t0, int n, int32_t first_page, bool use_skip, int first,
                             const NextRows* then = nullptr) {
    const char* vbase = static_cast<const char*>(p.v);
    const int g = group(), t = thread_in_group();
    const int tiles = (n + kVTile - 1) / kVTile;
    const int units = warp < tiles ? (tiles - warp + kWarps - 1) / kWarps * kVUnits : 0;
    auto tile_kept = [&](int tile) { return !(use_skip && sh.skip[(tile * kVTile) >> p.page_shift]); };
    uint32_t b[kVMmas][2] = {};
    auto load = [&](int k, Bytes16(&buf)[4]) {
      const int tile = warp + k / kVUnits * kWarps, s = k % kVUnits;
      const bool kept = tile_kept(tile);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = tile * kVTile + 4 * t + i;
        buf[i] = kept && row < n && row >= first
                     ? load_piece<Base::kChunkWideFetch>(vbase + (this->row_offset(t0 + row, first_page) + 8 * (8 * s + g)) * Base::kElemBytes)
                     : Bytes16{{0u, 0u, 0u, 0u}};
      }
      if (this->prefetching(then) && lane < kVTile) {
        this->prefetch_line(vbase, t0, n, first_page, use_skip, then, tile * kVTile + lane + p.prefetch_rows, s * 64 * Base::kElemBytes);
      }
    };
    auto use = [&](int k, const Bytes16(&buf)[4]) {
      const int tile = warp + k / kVUnits * kWarps, s = k % kVUnits;
      if (!tile_kept(tile)) return;  // the same for the whole warp
      if (s == 0) load_weights(b, tile, n);
#pragma unroll
      for (int ss = 0; ss < kVUnits; ++ss) {
        if (ss == s) multiply_v(o.c[ss], buf, b);  // (a compile-time index into o's registers)
      }
    };
    pipelined<4>(units, load, use);
  }

  // FP8: the chunk's weights times their rows' V scales over the accumulators' frame, before the
  // V pass (the caller synchronises before and after; warp 0 joins once it has routed). The
  // chunk's largest V scale among rows with a weight raises the frame first (rows without one:
  // outside the window or not anchors, whose scales may be anything, NaN included, stay 0).
  __device__ void scale_weights(O& o, int64_t /*t0*/, int n, int32_t /*first_page*/) {
    if constexpr (Base::kRowScales) {
      auto weighted = [&](int i) {
        bool any = false;
#pragma unroll
        for (int h = 0; h < GT; ++h) any = any || sh.w[h][i] != 0.f;
        return any;
      };
      float largest = 0.f;
      for (int i = threadIdx.x; i < n; i += kThreads) {
        if (weighted(i)) {
          const float scale = v_scale_rows[i];
          largest = scale > largest ? scale : largest;  // (a NaN scale makes its weights NaN below)
        }
      }
      largest = warp_max(largest);
      float* warp_largest = reduce;  // (free while the chunks run: reduce_to_shared comes after)
      if (lane == 0) warp_largest[warp] = largest;
      __syncthreads();
      float frame = o.frame;
      for (int w = 0; w < kWarps; ++w) frame = fmaxf(frame, warp_largest[w]);
      const float to_frame = frame > 0.f ? 1.f / frame : 0.f;
      for (int i = threadIdx.x; i < n; i += kThreads) {
        const float scale = v_scale_rows[i] * to_frame;
#pragma unroll
        for (int h = 0; h < GT; ++h) {
          if (sh.w[h][i] != 0.f) sh.w[h][i] *= scale;
        }
      }
      if (frame > o.frame) {
        const float ratio = o.frame / frame;
        scale_heads(o, ratio, ratio);
        o.frame = frame;
        o.inverse = to_frame;
      }
    }
  }

  // The factor from the summed accumulators to the output: the weights' scale undone, and for
  // FP8 the frame and the widened codes' factor.
  static __device__ float output_factor(const O& o) {
    if constexpr (Base::kRowScales) {
      return o.frame * CacheElem<DT>::unscale() * (1.f / Mma::kWeightScale);
    } else {
      return 1.f / Mma::kWeightScale;
    }
  }

  // Sum the accumulators of every warp into reduce[GT][D] in a fixed order (the same bits on
  // every run): each warp stages its fragments in the logit buffer, lane-major so no bank is
  // shared, then every thread sums one register of one lane over the warps. Called by all
  // threads once the logits are no longer needed.
  __device__ void reduce_to_shared(O& o) {
    if constexpr (kPackedWeights) {
      // Columns c + 4 (threads t + 2) into columns c: each head's terms in one sum.
#pragma unroll
      for (int s = 0; s < kVUnits; ++s) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
#pragma unroll
          for (int r = 0; r < 4; ++r) o.c[s][u][r] += shfl_xor(o.c[s][u][r], 2);
        }
      }
    }
    float* stage = &sh.w[0][0];  // [kWarps][16 registers][kWarp lanes]
    static_assert(kWarps * 16 * kWarp <= kMaxTileHeads * kLogitStride, "the stage fits the logit buffer");
#pragma unroll
    for (int s = 0; s < kVUnits; ++s) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
#pragma unroll
        for (int r = 0; r < 4; ++r) stage[(warp * 16 + u * 4 + r) * kWarp + lane] = o.c[s][u][r];
      }
      __syncthreads();
      for (int i = threadIdx.x; i < 16 * kWarp; i += kThreads) {
        const int reg = i / kWarp, from = i % kWarp;
        float sum = 0.f;
        for (int w = 0; w < kWarps; ++w) sum += stage[(w * 16 + reg) * kWarp + from];
        const int u = reg / 4, r = reg % 4;
        const int head = 2 * (from & 3) + (r & 1);
        const int dim = 8 * (8 * s + (from >> 2)) + 2 * u + (r >> 1);
        if (head < GT) reduce[head * D + dim] = sum * output_factor(o);
      }
      __syncthreads();
    }
  }
};

}  // namespace sr::gpu
