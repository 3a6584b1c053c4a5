// q.K and w.V on tensor cores (mma.sync m16n8k16): the passes of bf16 and f16 caches on CUDA.
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
#pragma once

#include <float.h>

#include "block_base.cuh"
#include "shared_arithmetic/softmax_state.h"
#include "tensor_core.cuh"

namespace sr::gpu {

template <int DT, int D, int GT, bool kAmpleRegisters>
struct TensorCorePasses : BlockBase<DT, D, GT, kAmpleRegisters> {
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
  static constexpr int kUnitLines = kScoreUnitLoads / 2;                     // 128-byte lines of a row per step
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
  // kernel's shared layout: ptxas then spilled more, dense 5% slower on the H100).
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
  };

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

  // Step `unit` of a score tile: k's 16-byte pieces t + 4j are the B operands of two k-steps
  // each, the first into c0 and the second into c1 (the same array: one accumulation chain).
  template <int N>
  __device__ void multiply_k(float (&c0)[4], float (&c1)[4], const Q& q, int unit, const Bytes16 (&k)[N]) const {
    static_assert(N >= kScoreUnitLoads, "a step's pieces");
#pragma unroll
    for (int i = 0; i < kScoreUnitLoads; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int f = 0; f < kQOperands; ++f) {
          Mma::mma(h == 0 ? c0 : c1, q.operand(unit * kScoreUnitLoads + i, h, f, lane).r, k[i].w[2 * h], k[i].w[2 * h + 1]);
        }
      }
    }
  }

  // Pass 1: logits of tokens [t0, t0 + n) (n <= kChunk) for every head of the tile. Warp w
  // takes tiles w, w + 4, ...; the next step's pieces load while the current one multiplies.
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
        for (int i = 0; i < kScoreUnitLoads; ++i) buf[i] = load_stream16<Base::kChunkWideFetch>(src + (t + 4 * (unit * kScoreUnitLoads + i)) * 16);
      } else {
#pragma unroll
        for (int i = 0; i < kScoreUnitLoads; ++i) buf[i] = Bytes16{{0u, 0u, 0u, 0u}};
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
  static __device__ void multiply_v(float (&acc)[4][4], const Bytes16 (&v)[4], const uint32_t (&b)[kVMmas][2]) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const uint32_t a[4] = {low_halves(v[0].w[u], v[1].w[u]), high_halves(v[0].w[u], v[1].w[u]),
                             low_halves(v[2].w[u], v[3].w[u]), high_halves(v[2].w[u], v[3].w[u])};
#pragma unroll
      for (int i = 0; i < kVMmas; ++i) Mma::mma(acc[u], a, b[i][0], b[i][1]);
    }
  }

  // Pass 2: o += w * V over tokens [t0, t0 + n), leaving out skipped blocks. A tile of 16 tokens
  // lies in one block (pages hold at least 16 tokens), so it is read or skipped whole.
  __device__ void accumulate(O& o, int64_t t0, int n, int32_t first_page, bool use_skip, const NextRows* then = nullptr) {
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
        buf[i] = kept && row < n
                     ? load_stream16<Base::kChunkWideFetch>(vbase + this->row_offset(t0 + row, first_page) * Base::kElemBytes + (8 * s + g) * 16)
                     : Bytes16{{0u, 0u, 0u, 0u}};
      }
      if (this->prefetching(then) && lane < kVTile) {
        this->prefetch_line(vbase, t0, n, first_page, use_skip, then, tile * kVTile + lane + p.prefetch_rows, s * 128);
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

  // ---- Dense splits, streamed: no chunks, no barriers until the end.
  // Routing off needs no block statistics, so each warp runs its own online softmax over tiles
  // of 16 tokens (w, w + 4, ...) and loads K and V of a tile in one pipeline: the memory pipe
  // never drains at a barrier. Registers hold kAhead steps in flight (the L2 prefetch of the
  // warp's next tile measured 0-8% slower on the H100). The tile's logits stay in registers:
  // the score C fragment gives thread (g, t) tokens 2t, 2t + 1 (and 8 + 2t, 9 + 2t from the
  // second score tile) of head g, exactly its B operand of the V pass when the V k slots map to
  // those tokens.
  static constexpr bool kStreamsDense = true;
  static constexpr bool kStreamsTau = true;  // (tau_stream_split, below)
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
  // A K step's MMAs in two accumulation chains (H100: dense batches 0.3-0.5% faster), except
  // where the 8 heads of a 256-wide row leave no registers for the second (it spilled).
  static constexpr bool kTwoKChains = D * GT <= 1024;

  // Pipeline step u of the tile whose rows start at element offset row0 (rows of it are real).
  // A step's loads share one 64-bit address of the thread and differ by compile-time offsets,
  // which fold into the load instructions (an address per load cost two instructions each).
  __device__ void load_tile_unit(int u, int64_t row0, int rows, Bytes16 (&buf)[4]) const {
    const int g = group(), t = thread_in_group();
    if (u < kKUnits) {
      const int half = u / kScoreUnits, un = u % kScoreUnits;
      const char* src = static_cast<const char*>(p.k) + (row0 + g * D + 8 * t) * Base::kElemBytes;  // row g, piece t
      const bool real = half * kScoreTile + g < rows;
#pragma unroll
      for (int i = 0; i < kScoreUnitLoads; ++i) {
        buf[i] = real ? load_stream16(src + (half * kScoreTile * D + 32 * (un * kScoreUnitLoads + i)) * Base::kElemBytes)
                      : Bytes16{{0u, 0u, 0u, 0u}};
      }
    } else {
      const int s = u - kKUnits;
      const char* src = static_cast<const char*>(p.v) + (row0 + 2 * t * D + 8 * g) * Base::kElemBytes;  // row 2t, piece g
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = (i & 1) + 8 * (i >> 1);  // k slots 2t, 2t + 1, 2t + 8, 2t + 9
        buf[i] = 2 * t + r < rows ? load_stream16(src + (r * D + 64 * s) * Base::kElemBytes) : Bytes16{{0u, 0u, 0u, 0u}};
      }
    }
  }

  __device__ void dense_split(const Q& q, O& o, int64_t begin, int64_t end) {
    const int tiles = static_cast<int>((end - begin + kVTile - 1) / kVTile);
    float m_run = -INFINITY, l_run = 0.f;  // head g's, this warp's (l: this thread's part)
    float c[2][4];
    uint32_t b[kVMmas][2] = {};
    // Step u of every tile uses buf[u % kRing]: kAhead steps in flight beside the one in use, in
    // registers fixed at compile time.
    Bytes16 buf[kRing][4] = {};
    // Where a tile's rows start (a tile lies in one page: pages hold >= 16 tokens, splits start
    // on a page boundary); the page of the warp's next tile is looked up one tile early.
    auto tile_token = [&](int tile) { return begin + static_cast<int64_t>(tile) * kVTile; };
    auto tile_rows = [&](int tile) { return static_cast<int>(end - tile_token(tile) < kVTile ? end - tile_token(tile) : kVTile); };
    int32_t page = warp < tiles ? this->pages[tile_token(warp) >> p.page_shift] : 0;
    if (warp < tiles) {
#pragma unroll
      for (int a = 0; a < kAhead; ++a) load_tile_unit(a, this->page_row_offset(page, tile_token(warp)), tile_rows(warp), buf[a]);
    }
    for (int tile = warp; tile < tiles; tile += kWarps) {
      const int64_t token = tile_token(tile);
      const int rows = tile_rows(tile);
      const int64_t row0 = this->page_row_offset(page, token);
      const bool more = tile + kWarps < tiles;
      const int32_t next_page = more ? this->pages[tile_token(tile + kWarps) >> p.page_shift] : 0;
      const int64_t next_row0 = this->page_row_offset(next_page, tile_token(tile + kWarps));
#pragma unroll
      for (int u = 0; u < kTileUnits; ++u) {
        if (u + kAhead < kTileUnits) {
          load_tile_unit(u + kAhead, row0, rows, buf[(u + kAhead) % kRing]);
        } else if (more) {
          load_tile_unit(u + kAhead - kTileUnits, next_row0, tile_rows(tile + kWarps), buf[(u + kAhead) % kRing]);
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
          if (u == kKUnits - 1) online_softmax(q, c, rows, m_run, l_run, b, o);
        } else {
          multiply_v(o.c[u - kKUnits], cur, b);
        }
      }
      page = next_page;
    }
    merge_warps(o, m_run, l_run);
    if (threadIdx.x == 0) {
      sh.blocks = begin < end ? static_cast<int32_t>((end - begin + p.page_tokens - 1) / p.page_tokens) : 0;
      sh.skipped = 0;
    }
  }

  // ---- Tau splits over 16-token pages, streamed (one long sequence: the host's rule).
  // A tile is then a whole block, so each warp decides alone, as route_chunk does: V of a tile
  // whose logits sit more than p.tau below the anchor's reference (sh.m_ref, from score_anchor)
  // for every head is not read. The warp walks one pipeline of steps, kAhead in flight: the K
  // steps of tile j, then the V steps of tile j - 1 if it was kept. V lags one tile so a tile's
  // decision comes before its V loads are issued, and a skipped tile leaves the pipeline: K
  // streams on without a bubble (tau 12 at 512K: 482 -> 416 us on the H100). The step logic
  // runs at run time, which costs 5-20% where most V is read, so dense splits keep dense_split
  // and short or batched tau steps the chunked passes (bench/NOTES.md, stop 15).

  // A warp's running softmax state over its tiles (this thread's part of the sums: head g).
  struct Stream {
    float m = -INFINITY, l = 0.f, skipped_l = 0.f, skipped_err = 0.f;
    float w_prev[4] = {0.f, 0.f, 0.f, 0.f};  // weights of the tile whose V steps come next
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
    auto page_of = [&](int j) { return j < mine ? this->pages[token_of(j) >> p.page_shift] : 0; };
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
        load_tile_unit(ls.u, this->page_row_offset(page_cur, token_of(ls.j)), rows_of(ls.j), buf);
      } else {
        load_tile_unit(ls.u, this->page_row_offset(page_prev, token_of(ls.j - 1)), rows_of(ls.j - 1), buf);
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
          }
        }
        if (cs.u == kKUnits - 1) {
          // Tile j's logits are complete: softmax, the decision, then the weights of tile j - 1
          // (rescaled with the accumulators) become the B operand of the V steps that follow.
          const int j = cs.j;
          const float m_tile = tau_online_softmax(q, c, rows_of(j), st, w, o);
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
          for (int e = 0; e < 4; ++e) st.w_prev[e] = w[e];
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

  // A tile's logits from the score C fragments (head g, tokens 2t, 2t + 1, 8 + 2t, 9 + 2t; rows
  // past the tile's end -inf) and the tile's largest logit of head g.
  __device__ float tile_logits(const Q& q, const float (&c)[2][4], int rows, float (&s)[4]) const {
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
      s[e] = r < rows ? s[e] * q.unscale : -INFINITY;
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
  // sum, the accumulators rescaled, and the weights as the B operand of the V steps.
  __device__ void online_softmax(const Q& q, const float (&c)[2][4], int rows, float& m_run, float& l_run,
                                 uint32_t (&b)[kVMmas][2], O& o) const {
    const int g = group();
    float s[4];
    const float m_tile = tile_logits(q, c, rows, s);
    const float m_new = fmaxf(m_run, m_tile);
    const bool live = column_head(g) < GT;
    const float alpha = live ? sr::rescale(m_run, m_new) : 1.f;
    m_run = m_new;
    float w[4];
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      w[e] = live ? __expf(s[e] - m_new) : 0.f;
      sum += w[e];
    }
    l_run = l_run * alpha + sum;
    weight_operands(b, w);
    rescale_where_moved(o, alpha);
  }

  // A tile's logits (head g, tokens 2t, 2t + 1, 8 + 2t, 9 + 2t) into the warp's running max and
  // sums, the accumulators and the pending weights rescaled; w: the tile's weights. Returns the
  // tile's largest logit of head g.
  __device__ float tau_online_softmax(const Q& q, const float (&c)[2][4], int rows, Stream& st, float (&w)[4], O& o) const {
    const int g = group();
    float s[4];
    const float m_tile = tile_logits(q, c, rows, s);
    const float m_new = fmaxf(st.m, m_tile);
    const bool live = column_head(g) < GT;
    const float alpha = live ? sr::rescale(st.m, m_new) : 1.f;
    st.m = m_new;
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      w[e] = live ? __expf(s[e] - m_new) : 0.f;
      sum += w[e];
      st.w_prev[e] *= alpha;
    }
    st.l = st.l * alpha + sum;
    st.skipped_l *= alpha;
    st.skipped_err *= alpha;
    rescale_where_moved(o, alpha);
    return m_tile;
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
        if (head < GT) reduce[head * D + dim] = sum * (1.f / Mma::kWeightScale);
      }
      __syncthreads();
    }
  }
};

}  // namespace sr::gpu
