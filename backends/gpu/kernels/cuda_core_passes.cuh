// q.K and w.V as f32 FMAs on the CUDA (or AMD vector) cores: the passes of f32 caches on CUDA, and
// of every cache on HIP (FP8 included). A row is split over kLanesPerRow lanes (one load each: 16
// bytes, 8 for FP8), a warp step covers kRowsPerWarp rows, and a lane keeps every head of the tile
// in registers. An FP8 row's scale (times CacheElem::unscale()) multiplies its logit (K) or its
// weight (V: before the sum over tokens), in f32, as the CPU's split kernel does
// (docs/ARCHITECTURE.md, "GPU backend: the decode kernel"): in shared memory, once a chunk's logits
// are written (end of score) and once its weights are (scale_weights, while warp 0 routes), so the
// pipelined loops hold no scales (a register for them, or the V scaling inside accumulate, spilled
// the sm_90 3-blocks builds, and so did L2 prefetches of the scales).
#pragma once

#include "block_base.cuh"

namespace sr::gpu {

template <int DT, int D, int GT>
struct Shape {
  static constexpr int kVec = CacheElem<DT>::kPerLoad;          // elements per load
  static constexpr int kLoadBytes = CacheElem<DT>::kLoadBytes;  // 16, or 8 for FP8
  static constexpr int kLanesPerRow = (D / kVec) < kWarp ? (D / kVec) : kWarp;
  static constexpr int kLoadsPerRow = D / (kLanesPerRow * kVec);  // per lane
  static constexpr int kRowsPerWarp = kWarp / kLanesPerRow;     // rows one warp step covers
  static constexpr int kElems = kLoadsPerRow * kVec;            // elements of a row per lane
  static constexpr int kUnroll = 4 / kLoadsPerRow;              // loads per batch (two in flight); FP8's 8-byte
                                                                // loads at 8 a batch spill in the 3-blocks builds
  static constexpr bool kScaled = DT == SR_DTYPE_FP8_E4M3;      // rows carry a scale
  static_assert(kLanesPerRow * kRowsPerWarp == kWarp, "rows tile the warp");
};

template <int DT, int D, int GT, bool kAmpleRegisters>
struct CudaCorePasses : BlockBase<DT, D, GT, kAmpleRegisters> {
  using Base = BlockBase<DT, D, GT, kAmpleRegisters>;
  using S = Shape<DT, D, GT>;
  using Base::Base;
  using Base::lane;
  using Base::p;
  using Base::reduce;
  using Base::sh;
  using Base::warp;

  static constexpr bool kStreamsDense = false;  // dense splits take the chunked path too
  static constexpr bool kStreamsTau = false;    // and so do tau splits

  struct Q {
    float x[GT][S::kElems];  // this lane's elements of each head's q, times the scale
  };
  struct O {
    float x[GT][S::kElems];  // this lane's elements of each head's output
  };

  __device__ int part() const { return lane % S::kLanesPerRow; }
  __device__ int row_in_step() const { return lane / S::kLanesPerRow; }

  // Dimension of element e of this lane's part of a row.
  __device__ int dim_of(int e) const { return ((e / S::kVec) * S::kLanesPerRow + part()) * S::kVec + e % S::kVec; }

  static constexpr int kQSharedSlots = 1;  // (q lives in registers: no shared buffer)
  __device__ void load_q(Q& q, int64_t q_row0, uint4* /*unused*/) const {
#pragma unroll
    for (int h = 0; h < GT; ++h) {
      float loaded[S::kElems];
      load_many(p.q, p.q_dtype, h < this->valid_heads, [&](int e) { return q_row0 + h * D + dim_of(e); }, loaded);
#pragma unroll
      for (int e = 0; e < S::kElems; ++e) q.x[h][e] = loaded[e] * p.scale;
    }
  }

  __device__ void clear(O& o) const {
#pragma unroll
    for (int h = 0; h < GT; ++h) {
#pragma unroll
      for (int e = 0; e < S::kElems; ++e) o.x[h][e] = 0.f;
    }
  }

  // The accumulators into the frame of the chunk's new running maximum.
  __device__ void rescale(O& o) const {
#pragma unroll
    for (int h = 0; h < GT; ++h) {
      const float alpha = sh.alpha[h];
#pragma unroll
      for (int e = 0; e < S::kElems; ++e) o.x[h][e] *= alpha;
    }
  }

  // One load of a row's piece (8-byte loads fill the first two words).
  __device__ static Bytes16 load_piece(const char* src) {
    if constexpr (S::kLoadBytes == 8) {
      const uint2 v = load_stream8<Base::kChunkWideFetch>(src);
      return Bytes16{{v.x, v.y, 0u, 0u}};
    } else {
      return load_stream16<Base::kChunkWideFetch>(src);
    }
  }

  // Rows of one batch of warp steps: the pieces of rows (s0 + u * kWarps) * rows-per-step.
  __device__ void load_batch(Bytes16 (&buf)[S::kUnroll][S::kLoadsPerRow], const char* base, int s0, int64_t t0, int n,
                             int32_t first_page, bool use_skip, int first, bool (&keep)[S::kUnroll]) const {
#pragma unroll
    for (int u = 0; u < S::kUnroll; ++u) {
      int row = (s0 + u * kWarps) * S::kRowsPerWarp + row_in_step();
      keep[u] = this->row_kept(row, first, n, use_skip);
      if (keep[u]) {
        const char* src = base + this->row_offset(t0 + row, first_page) * Base::kElemBytes;
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) buf[u][j] = load_piece(src + ((j * S::kLanesPerRow + part()) * S::kVec) * Base::kElemBytes);
      } else {
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) buf[u][j] = Bytes16{{0u, 0u, 0u, 0u}};
      }
    }
  }

  // The L2 prefetch of the rows p.prefetch_rows past this warp's batch at step s0. A warp's
  // batch is 2 KB (1 KB for FP8), 16 (8) lines of 128 bytes: lane i requests line i (a line holds
  // two rows of an FP8 head_dim-64 cache: consecutive rows of one step, lane i requests row 2i's).
  __device__ void prefetch_batch(const char* base, int s0, int64_t t0, int n, int32_t first_page, bool use_skip,
                                 const NextRows* next) const {
    constexpr int kRowBytes = D * Base::kElemBytes;
    constexpr int kLinesPerRow = kRowBytes >= 128 ? kRowBytes / 128 : 1;
    constexpr int kRowsPerLine = kRowBytes >= 128 ? 1 : 128 / kRowBytes;
    constexpr int kBatchLines = S::kUnroll * S::kRowsPerWarp * kLinesPerRow / kRowsPerLine;
    static_assert(kRowBytes % 128 == 0 || 128 % kRowBytes == 0, "rows and lines tile");
    static_assert(kBatchLines * kRowsPerLine == S::kUnroll * S::kRowsPerWarp * kLinesPerRow &&
                      S::kRowsPerWarp % kRowsPerLine == 0 && kBatchLines <= kWarp,
                  "whole lines a batch");
    if (!this->prefetching(next) || lane >= kBatchLines) return;
    const int r = (lane / kLinesPerRow) * kRowsPerLine;  // row of the batch
    const int row = (s0 + (r / S::kRowsPerWarp) * kWarps) * S::kRowsPerWarp + r % S::kRowsPerWarp + p.prefetch_rows;
    this->prefetch_line(base, t0, n, first_page, use_skip, next, row, (lane % kLinesPerRow) * 128);
  }

  // Pass 1: logits of tokens [t0, t0 + n) (n <= kChunk) for every head of the tile. The next
  // batch of rows is requested before the current one is used, so loads stay in flight.
  __device__ void score(const Q& q, int64_t t0, int n, int32_t first_page, const NextRows* then = nullptr) {
    const char* kbase = static_cast<const char*>(p.k);
    const int steps = (n + S::kRowsPerWarp - 1) / S::kRowsPerWarp;
    constexpr int kStride = kWarps * S::kUnroll;
    Bytes16 buf[S::kUnroll][S::kLoadsPerRow];
    bool keep[S::kUnroll];
    if (warp < steps) load_batch(buf, kbase, warp, t0, n, first_page, false, 0, keep);
    prefetch_batch(kbase, warp, t0, n, first_page, false, then);
    for (int s0 = warp; s0 < steps; s0 += kStride) {
      Bytes16 next[S::kUnroll][S::kLoadsPerRow];
      bool keep_next[S::kUnroll] = {};
      if (s0 + kStride < steps) load_batch(next, kbase, s0 + kStride, t0, n, first_page, false, 0, keep_next);
      prefetch_batch(kbase, s0 + kStride, t0, n, first_page, false, then);
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        float x[S::kElems];
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) CacheElem<DT>::widen(buf[u][j], x + j * S::kVec);
        float dot[GT];
#pragma unroll
        for (int h = 0; h < GT; ++h) {
          float acc = 0.f;
#pragma unroll
          for (int e = 0; e < S::kElems; ++e) acc = fmaf(q.x[h][e], x[e], acc);
          dot[h] = acc;
        }
        int head = 0;
        float total = reduce_heads(dot, head);
        int row = (s0 + u * kWarps) * S::kRowsPerWarp + row_in_step();
        if (writes_head() && row < n) sh.w[head][row] = total;
      }
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) buf[u][j] = next[u][j];
      }
    }
    if constexpr (S::kScaled) {
      __syncthreads();  // every warp's logits are written (the caller synchronises after)
      scale_rows(p.k_scale, t0, n, first_page);
    }
  }

  // Sums dot[h] over the kLanesPerRow lanes of a row for every head with few shuffles: while
  // several heads remain, each lane keeps half of them and trades the other half with its
  // partner, so GT heads over 16 lanes take GT/2 + GT/4 + ... + the remaining levels.
  // Returns the sum for head `head` (which depends on the lane).
  __device__ float reduce_heads(float (&dot)[GT], int& head) const {
    int count = GT;
#pragma unroll
    for (int o = S::kLanesPerRow / 2; o > 0; o >>= 1) {
      if (count > 1) {
        const int half = count / 2;
        const bool upper = (part() & o) != 0;
#pragma unroll
        for (int i = 0; i < GT / 2; ++i) {
          if (i < half) {
            float give = upper ? dot[i] : dot[half + i];
            float keep = upper ? dot[half + i] : dot[i];
            dot[i] = keep + shfl_xor(give, o);
          }
        }
        if (upper) head += half;
        count = half;
      } else {
        dot[0] += shfl_xor(dot[0], o);
      }
    }
    return dot[0];
  }

  // Lanes holding a finished sum after reduce_heads: those whose bits below the levels that
  // split heads are zero.
  __device__ bool writes_head() const {
    int count = GT, plain = 0;
    for (int o = S::kLanesPerRow / 2; o > 0; o >>= 1) {
      if (count > 1) count /= 2;
      else plain |= o;
    }
    return (part() & plain) == 0;
  }

  // FP8: sh.w[h][i] (every head) times the scale of row i of [t0, t0 + n): K scales into
  // logits, V scales into weights (rows of skipped blocks too: nothing reads them). Called by
  // all threads; no barrier.
  __device__ void scale_rows(const float* scales, int64_t t0, int n, int32_t first_page) {
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const float scale = scales[this->row_offset(t0 + i, first_page) / D] * CacheElem<DT>::unscale();
#pragma unroll
      for (int h = 0; h < GT; ++h) sh.w[h][i] *= scale;
    }
  }

  // FP8: the chunk's weights times their rows' V scales, before the V pass (the caller
  // synchronises before and after).
  __device__ void scale_weights(O&, int64_t t0, int n, int32_t first_page) {
    if constexpr (S::kScaled) scale_rows(p.v_scale, t0, n, first_page);
  }

  // Pass 2: o += w * V over tokens [t0, t0 + n), leaving out rows of skipped blocks and the rows
  // before `first` (outside the window; FP8: the weights carry the V scales, scale_weights).
  __device__ void accumulate(O& o, int64_t t0, int n, int32_t first_page, bool use_skip, int first,
                             const NextRows* then = nullptr) {
    const char* vbase = static_cast<const char*>(p.v);
    const int steps = (n + S::kRowsPerWarp - 1) / S::kRowsPerWarp;
    constexpr int kStride = kWarps * S::kUnroll;
    Bytes16 buf[S::kUnroll][S::kLoadsPerRow];
    bool keep[S::kUnroll];
    if (warp < steps) load_batch(buf, vbase, warp, t0, n, first_page, use_skip, first, keep);
    prefetch_batch(vbase, warp, t0, n, first_page, use_skip, then);
    for (int s0 = warp; s0 < steps; s0 += kStride) {
      Bytes16 next[S::kUnroll][S::kLoadsPerRow];
      bool keep_next[S::kUnroll] = {};
      if (s0 + kStride < steps) load_batch(next, vbase, s0 + kStride, t0, n, first_page, use_skip, first, keep_next);
      prefetch_batch(vbase, s0 + kStride, t0, n, first_page, use_skip, then);
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        if (!keep[u]) continue;
        int row = (s0 + u * kWarps) * S::kRowsPerWarp + row_in_step();
        float x[S::kElems];
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) CacheElem<DT>::widen(buf[u][j], x + j * S::kVec);
#pragma unroll
        for (int h = 0; h < GT; ++h) {
          float w = sh.w[h][row];
#pragma unroll
          for (int e = 0; e < S::kElems; ++e) o.x[h][e] = fmaf(w, x[e], o.x[h][e]);
        }
      }
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        keep[u] = keep_next[u];
#pragma unroll
        for (int j = 0; j < S::kLoadsPerRow; ++j) buf[u][j] = next[u][j];
      }
    }
  }

  // Sum the accumulators of every lane and warp into reduce[GT][D], warp by warp in a fixed
  // order, so the result is the same bits on every run. Called by all threads.
  __device__ void reduce_to_shared(O& o) {
#pragma unroll
    for (int off = S::kLanesPerRow; off < kWarp; off <<= 1) {
#pragma unroll
      for (int h = 0; h < GT; ++h) {
#pragma unroll
        for (int e = 0; e < S::kElems; ++e) o.x[h][e] += shfl_xor(o.x[h][e], off);
      }
    }
    for (int w = 0; w < kWarps; ++w) {
      if (warp == w && row_in_step() == 0) {
#pragma unroll
        for (int h = 0; h < GT; ++h) {
#pragma unroll
          for (int e = 0; e < S::kElems; ++e) {
            float& slot = reduce[h * D + dim_of(e)];
            slot = w == 0 ? o.x[h][e] : slot + o.x[h][e];
          }
        }
      }
      __syncthreads();
    }
  }
};

}  // namespace sr::gpu
