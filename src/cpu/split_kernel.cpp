// Compiled once per instruction set with SR_CPU_ISA naming the namespace (see CMakeLists.txt):
// plain C++ with GCC vector types, so the compiler emits SSE2, AVX2 or AVX-512 from one source.
// No std templates here: their out-of-line copies are shared between object files, and the
// linker could hand the baseline kernel a copy compiled for AVX-512.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "cpu/fast_exp.h"
#include "cpu/split_kernel.h"

#include <new>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#ifndef SR_CPU_ISA
#error "SR_CPU_ISA must name the instruction set this file is compiled for"
#endif

namespace sr::cpu::SR_CPU_ISA {
namespace {

typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, f32x16 v) { memcpy(p, &v, sizeof v); }

// Horizontal sum as a tree: a chain of 16 dependent adds would cost more than the dot itself.
inline float sum16(f32x16 v) {
  f32x8 a, b;
  memcpy(&a, &v, sizeof a);
  memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof a, sizeof b);
  a += b;
  f32x4 c, d;
  memcpy(&c, &a, sizeof c);
  memcpy(&d, reinterpret_cast<const char*>(&a) + sizeof c, sizeof d);
  c += d;
  return (c[0] + c[2]) + (c[1] + c[3]);
}

// An FP8 chunk holds each stored code's value times 2^-8 (below): exact, so the row's scale is
// applied as 256 * scale where a row's logit or weight is formed.
constexpr float kFp8ChunkUnit = 256.f;

// Sixteen consecutive cache elements starting at element i, widened to f32 in registers.
template <sr_dtype DT>
inline f32x16 chunk16(const void* base, int64_t i) {
  if constexpr (DT == SR_DTYPE_FP8_E4M3) {
    const uint8_t* p = static_cast<const uint8_t*>(base) + i;
    f32x16 f;
#if defined(__F16C__)
    // E4M3's exponent and mantissa bits, moved into an f16's, make the f16 of value * 2^-8
    // (subnormals included; the NaN code becomes 480 * 2^-8, but only a row with a NaN scale
    // stores it: docs/ARCHITECTURE.md, "FP8 cache"). (b + (b & 0x80)) << 7 moves bits 0-6 to
    // 7-13 and the sign to bit 15 (the added sign bit carries out of bit 14) in three operations.
    u8x16 b;
    memcpy(&b, p, sizeof b);
    u16x16 w = __builtin_convertvector(b, u16x16);
    u16x16 h = (w + (w & 0x80)) << 7;
    __m128i lo_bits, hi_bits;
    memcpy(&lo_bits, &h, sizeof lo_bits);
    memcpy(&hi_bits, reinterpret_cast<const char*>(&h) + sizeof lo_bits, sizeof hi_bits);
    __m256 lo = _mm256_cvtph_ps(lo_bits);
    __m256 hi = _mm256_cvtph_ps(hi_bits);
    memcpy(&f, &lo, sizeof lo);
    memcpy(reinterpret_cast<char*>(&f) + sizeof lo, &hi, sizeof hi);
#else
    for (int j = 0; j < 16; ++j) f[j] = fp8_e4m3_to_float(p[j]) * (1.f / kFp8ChunkUnit);
#endif
    return f;
  } else if constexpr (DT == SR_DTYPE_F32) {
    return load16(static_cast<const float*>(base) + i);
  } else if constexpr (DT == SR_DTYPE_BF16) {
    u16x16 h;
    memcpy(&h, static_cast<const uint16_t*>(base) + i, sizeof h);
    u32x16 w = __builtin_convertvector(h, u32x16) << 16;  // bf16 is the top half of an f32
    f32x16 f;
    memcpy(&f, &w, sizeof f);
    return f;
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(base) + i;
    f32x16 f;
#if defined(__F16C__)
    __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
    memcpy(&f, &lo, sizeof lo);
    memcpy(reinterpret_cast<char*>(&f) + sizeof lo, &hi, sizeof hi);
#else
    for (int j = 0; j < 16; ++j) f[j] = f16_to_float(p[j]);
#endif
    return f;
  }
}

// The factor a row's chunks are multiplied by: its FP8 scale (in chunk units), else 1.
template <sr_dtype DT>
inline float row_factor(const float* scales, int64_t row) {
  if constexpr (DT == SR_DTYPE_FP8_E4M3) {
    return scales[row] * kFp8ChunkUnit;
  } else {
    (void)scales, (void)row;
    return 1.f;
  }
}

// The group's queries (times the softmax scale), [group][head_dim] each. Where the build has
// AVX512-BF16 and the cache is bf16, also as two bf16 halves, hi = bf16(q) and
// lo = bf16(q - hi): |q - hi - lo| <= 2^-16 |q|, so VDPBF16PS (exact bf16 products, f32 sums)
// scores a row with an error of at most 2^-16 sum |q_i k_i| beyond f32 rounding
// (docs/ARCHITECTURE.md, "CPU backend").
struct Query {
  const float* f32;
  const uint16_t* hi;
  const uint16_t* lo;
};

#if defined(__AVX512BF16__)
constexpr bool kDotBf16 = true;
inline __m512bh load_bf16x32(const uint16_t* p) {
  __m512bh v;
  memcpy(&v, p, sizeof v);
  return v;
}
#else
constexpr bool kDotBf16 = false;
#endif

// Logits of GT q-heads (from head h0 on) against one cache row (elements [first, first + D)):
// the row is loaded once for all heads. s[h * s_stride] receives head h's logit.
template <sr_dtype DT, int D, int GT>
inline void score_heads(const Query& query, int h0, const void* base, int64_t first, float factor, float* s,
                        int64_t s_stride) {
#if defined(__AVX512BF16__)
  if constexpr (DT == SR_DTYPE_BF16) {
    // Two accumulators per head (hi and lo halves) keep the dependency chains short.
    const uint16_t* k = static_cast<const uint16_t*>(base) + first;
    __m512 acc_hi[GT], acc_lo[GT];
    for (int h = 0; h < GT; ++h) acc_hi[h] = acc_lo[h] = _mm512_setzero_ps();
    for (int d = 0; d < D; d += 32) {
      const __m512bh kv = load_bf16x32(k + d);
      for (int h = 0; h < GT; ++h) {
        acc_hi[h] = _mm512_dpbf16_ps(acc_hi[h], kv, load_bf16x32(query.hi + (h0 + h) * D + d));
        acc_lo[h] = _mm512_dpbf16_ps(acc_lo[h], kv, load_bf16x32(query.lo + (h0 + h) * D + d));
      }
    }
    for (int h = 0; h < GT; ++h) s[h * s_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc_hi[h], acc_lo[h]));
    (void)factor;  // 1 for bf16
    return;
  }
#endif
  const float* q = query.f32 + h0 * D;
  f32x16 acc[GT];
  for (int h = 0; h < GT; ++h) acc[h] = f32x16{};
  for (int d = 0; d < D; d += 16) {
    f32x16 k = chunk16<DT>(base, first + d);
    for (int h = 0; h < GT; ++h) acc[h] += load16(q + h * D + d) * k;
  }
  for (int h = 0; h < GT; ++h) s[h * s_stride] = sum16(acc[h]) * factor;  // factor 1 (exact) but for FP8
}

// All G heads of a group against cache row `row` of a layer whose rows have scales `scales`
// (FP8), in fixed-size bundles the compiler keeps in registers.
template <sr_dtype DT, int D>
inline void score_row(const Query& q, int G, const void* base, const float* scales, int64_t row, float* s,
                      int64_t s_stride) {
  const int64_t first = row * D;
  const float factor = row_factor<DT>(scales, row);
  int h = 0;
  for (; h + 8 <= G; h += 8) score_heads<DT, D, 8>(q, h, base, first, factor, s + h * s_stride, s_stride);
  if (h + 4 <= G) {
    score_heads<DT, D, 4>(q, h, base, first, factor, s + h * s_stride, s_stride);
    h += 4;
  }
  if (h + 2 <= G) {
    score_heads<DT, D, 2>(q, h, base, first, factor, s + h * s_stride, s_stride);
    h += 2;
  }
  if (h < G) score_heads<DT, D, 1>(q, h, base, first, factor, s + h * s_stride, s_stride);
}

// o[h] += sum over n rows of w[h * w_stride + t] * row_t, for GT heads: each 16-wide slice
// of o stays in registers across the rows, and each row is read once for all heads. FP8 rows
// take weights that already hold their row factors (row_weights).
template <sr_dtype DT, int D, int GT>
inline void accumulate_heads(const float* w, int64_t w_stride, const void* base, int64_t row0, int64_t n, float* o) {
  for (int d = 0; d < D; d += 16) {
    f32x16 acc[GT];
    for (int h = 0; h < GT; ++h) acc[h] = load16(o + h * D + d);
    for (int64_t t = 0; t < n; ++t) {
      f32x16 v = chunk16<DT>(base, (row0 + t) * D + d);
      for (int h = 0; h < GT; ++h) acc[h] += w[h * w_stride + t] * v;
    }
    for (int h = 0; h < GT; ++h) store16(o + h * D + d, acc[h]);
  }
}

// Rows row0 .. row0 + n - 1 of a layer, weighted, into the outputs of all G heads.
template <sr_dtype DT, int D>
inline void accumulate_rows(const float* w, int64_t w_stride, int G, const void* base, int64_t row0, int64_t n,
                            float* o) {
  int h = 0;
  for (; h + 4 <= G; h += 4) accumulate_heads<DT, D, 4>(w + h * w_stride, w_stride, base, row0, n, o + h * D);
  if (h + 2 <= G) {
    accumulate_heads<DT, D, 2>(w + h * w_stride, w_stride, base, row0, n, o + h * D);
    h += 2;
  }
  if (h < G) accumulate_heads<DT, D, 1>(w + h * w_stride, w_stride, base, row0, n, o + h * D);
}

// The weights accumulate_rows takes for rows row0 .. row0 + n - 1: as given, or for FP8 times
// each row's factor, computed once per row into `scaled` ([G][n]) rather than once per slice.
template <sr_dtype DT>
inline const float* row_weights(const float* w, int64_t* w_stride, int G, const float* scales, int64_t row0,
                                int64_t n, float* scaled) {
  if constexpr (DT == SR_DTYPE_FP8_E4M3) {
    for (int h = 0; h < G; ++h) {
      for (int64_t t = 0; t < n; ++t) scaled[h * n + t] = w[h * *w_stride + t] * row_factor<DT>(scales, row0 + t);
    }
    *w_stride = n;
    return scaled;
  } else {
    (void)G, (void)scales, (void)row0, (void)n, (void)scaled;
    return w;
  }
}

// In place: x[i] = exp(x[i] - m); returns the sum. The exp loop has no reduction in it, so it
// vectorises; the sum runs 16 wide.
inline float exp_and_sum(float* x, int64_t n, float m) {
  for (int64_t i = 0; i < n; ++i) x[i] = fast_exp(x[i] - m);
  f32x16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load16(x + i);
  float sum = sum16(acc);
  for (; i < n; ++i) sum += x[i];
  return sum;
}

constexpr int kMaxBlocks = kMaxSplitTokens / 16;  // pages hold at least 16 tokens
constexpr int kMaxPageTokens = 128;
constexpr int kMaxAnchor = 1 << 16;
// Floats of one head's budget walk over a split's pages (tree_walk_floats, at most).
constexpr int kMaxWalkFloats = 3 * kTreeLevels * (kMaxBlocks / kTreeFan + 2);

// Per-thread working memory, allocated once per thread on first use.
struct Scratch {
  float* weights = nullptr;    // [group][split tokens]: logits, then exp(logit - m)
  float* block_max = nullptr;  // [group][blocks]
  float* block_sum = nullptr;  // [group][blocks]
  float* block_sum2 = nullptr; // [group][blocks]: sum of squared weights
  float* walk = nullptr;       // [2][group][kMaxWalkFloats]: budget mode's TreeWalk nodes (plain, centred)
  int* order = nullptr;        // [blocks]
  float* keys = nullptr;       // [blocks]
  unsigned char* skip = nullptr;  // [blocks]
  float* anchor_logits = nullptr;  // [anchor tokens][group]
  float* anchor_out = nullptr;     // [group][head_dim]
  float* scaled_weights = nullptr; // [group][page tokens]: FP8 weights times their row factors
  uint16_t* q_halves = nullptr;    // [2][group][head_dim]: the bf16 halves of Query
  int anchor_capacity = 0;
  Scratch() {
    weights = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * kMaxSplitTokens));
    block_max = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * kMaxBlocks));
    block_sum = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * kMaxBlocks));
    block_sum2 = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * kMaxBlocks));
    walk = static_cast<float*>(malloc(sizeof(float) * 2 * kMaxGroup * kMaxWalkFloats));
    order = static_cast<int*>(malloc(sizeof(int) * kMaxBlocks));
    keys = static_cast<float*>(malloc(sizeof(float) * kMaxBlocks));
    skip = static_cast<unsigned char*>(malloc(kMaxBlocks));
    anchor_out = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * 256));
    scaled_weights = static_cast<float*>(malloc(sizeof(float) * kMaxGroup * kMaxPageTokens));
    q_halves = static_cast<uint16_t*>(malloc(sizeof(uint16_t) * 2 * kMaxGroup * 256));
  }
  ~Scratch() {
    free(weights);
    free(block_max);
    free(block_sum);
    free(block_sum2);
    free(walk);
    free(order);
    free(keys);
    free(skip);
    free(anchor_logits);
    free(anchor_out);
    free(scaled_weights);
    free(q_halves);
  }
  float* anchor(int tokens, int group) {
    if (tokens * group > anchor_capacity) {
      free(anchor_logits);
      anchor_capacity = tokens * group;
      anchor_logits = static_cast<float*>(malloc(sizeof(float) * anchor_capacity));
    }
    return anchor_logits;
  }
  bool ok() const {
    return weights && block_max && block_sum && block_sum2 && walk && order && keys && skip && anchor_out && scaled_weights && q_halves;
  }
};

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Pages sit anywhere in the pool, so each block starts a stream the hardware prefetcher has not
// seen. While one block is computed, the same row of the next block is fetched, one row per
// row computed: spread out, so the prefetches never queue up behind each other.
template <sr_dtype DT, int D>
inline void prefetch_row(const void* base, int64_t row) {
  constexpr int64_t kBytes = D * static_cast<int64_t>(dtype_element_bytes(DT));
  const char* p = static_cast<const char*>(base) + row * kBytes;
  for (int64_t offset = 0; offset < kBytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

// Heap sort of block indices by precomputed keys, ascending (no std::sort here: see the top).
void sift_down(int* items, const float* keys, int start, int n) {
  int root = start;
  for (;;) {
    int child = 2 * root + 1;
    if (child >= n) return;
    if (child + 1 < n && keys[items[child + 1]] > keys[items[child]]) ++child;
    if (keys[items[child]] <= keys[items[root]]) return;
    int t = items[root];
    items[root] = items[child];
    items[child] = t;
    root = child;
  }
}

void sort_by_key(int* items, int n, const float* keys) {
  for (int i = n / 2 - 1; i >= 0; --i) sift_down(items, keys, i, n);
  for (int end = n - 1; end > 0; --end) {
    int t = items[0];
    items[0] = items[end];
    items[end] = t;
    sift_down(items, keys, 0, end);
  }
}

// Row index of token t of kv-head h in a layer: pages are [kv_heads][page_tokens] rows.
inline int64_t row_of(const LayerView& L, const int32_t* pages, int32_t kv_head, int64_t t) {
  int64_t page = pages[t / L.page_tokens];
  return (page * L.kv_heads + kv_head) * L.page_tokens + t % L.page_tokens;
}

// The Query of a split: its bf16 halves, in `halves`, only where score_heads takes them.
template <sr_dtype DT, int D>
inline Query make_query(const float* q, int G, uint16_t* halves) {
  if (!(kDotBf16 && DT == SR_DTYPE_BF16)) return Query{q, nullptr, nullptr};
  uint16_t* hi = halves;
  uint16_t* lo = halves + G * D;
  for (int i = 0; i < G * D; ++i) {
    hi[i] = float_to_bf16(q[i]);
    lo[i] = float_to_bf16(q[i] - bf16_to_float(hi[i]));
  }
  return Query{q, hi, lo};
}

// Scores of the anchor set for every q-head of the group: reference m_ref, z = sum
// exp(s - m_ref), and (budget mode) the norm of the anchor-only output.
template <sr_dtype DT, int D>
void score_anchor(const LayerView& L, const RoutingConfig& R, const SplitTask& task, const Query& query,
                  const AnchorSet& anchor, Scratch& scratch, float* m_ref, float* z, float* out_norm) {
  const int G = task.group;
  const bool budget = R.mode == SR_ROUTING_BUDGET;
  const int64_t n_sink = anchor.sink_end - anchor.sink_begin, n_window = task.length - anchor.window_begin;
  const int n_anchor = static_cast<int>(n_sink + n_window);
  float* logits = scratch.anchor(n_anchor, G);
  auto token = [&](int i) { return i < n_sink ? anchor.sink_begin + i : anchor.window_begin + (i - n_sink); };
  for (int h = 0; h < G; ++h) m_ref[h] = task.sink_logits ? task.sink_logits[h] : -INFINITY;
  for (int i = 0; i < n_anchor; ++i) {
    score_row<DT, D>(query, G, L.k, L.k_scale, row_of(L, task.pages, task.kv_head, token(i)), logits + i * G, 1);
    for (int h = 0; h < G; ++h) {
      logits[i * G + h] = soft_cap(logits[i * G + h], task.soft_cap);
      m_ref[h] = fmaxf(m_ref[h], logits[i * G + h]);
    }
  }
  float* o = scratch.anchor_out;
  if (budget) memset(o, 0, sizeof(float) * G * D);
  // z holds the sink's weight too; the allowance uses only z * ||o_anchor / z||, which it cancels.
  for (int h = 0; h < G; ++h) z[h] = task.sink_logits ? fast_exp(task.sink_logits[h] - m_ref[h]) : 0.f;
  for (int i = 0; i < n_anchor; ++i) {
    for (int h = 0; h < G; ++h) {
      logits[i * G + h] = fast_exp(logits[i * G + h] - m_ref[h]);
      z[h] += logits[i * G + h];
    }
    if (budget) {
      const int64_t row = row_of(L, task.pages, task.kv_head, token(i));
      int64_t stride = 1;
      const float* wr = row_weights<DT>(logits + i * G, &stride, G, L.v_scale, row, 1, scratch.scaled_weights);
      accumulate_rows<DT, D>(wr, stride, G, L.v, row, 1, o);
    }
  }
  for (int h = 0; h < G; ++h) {
    out_norm[h] = 0.f;
    if (!budget) continue;
    float n2 = 0.f;
    for (int d = 0; d < D; ++d) n2 += o[h * D + d] * o[h * D + d];
    out_norm[h] = sqrtf(n2) / z[h];
  }
}

template <sr_dtype DT, int D>
void run_split_impl(const LayerView& L, const RoutingConfig& R, SplitTask& task) {
  static thread_local Scratch scratch;
  if (!scratch.ok()) throw std::bad_alloc();
  const int G = task.group;
  const int PT = L.page_tokens;
  const int64_t n = task.end - task.begin;
  const int n_blocks = static_cast<int>((n + PT - 1) / PT);
  float* w = scratch.weights;  // w[h * n + i]
  float* bmax = scratch.block_max;  // bmax[h * n_blocks + b]
  float* bsum = scratch.block_sum;
  const Query query = make_query<DT, D>(task.q, G, scratch.q_halves);

  // Pass 1: every logit of the split, K read once for the whole group.
  float m[kMaxGroup];
  for (int h = 0; h < G; ++h) m[h] = -INFINITY;
  for (int b = 0; b < n_blocks; ++b) {
    int64_t t0 = task.begin + static_cast<int64_t>(b) * PT;
    int64_t t1 = min64(t0 + PT, task.end);
    int64_t row0 = row_of(L, task.pages, task.kv_head, t0);
    int64_t next_row0 = b + 1 < n_blocks ? row_of(L, task.pages, task.kv_head, t0 + PT) : -1;
    // Rows before the first attended one (a sliding window's first page) are not read.
    const int64_t first = t0 > task.first_row ? t0 : task.first_row;
    for (int64_t t = t0; t < first; ++t) {
      for (int h = 0; h < G; ++h) w[h * n + (t - task.begin)] = -INFINITY;
    }
    for (int64_t t = first; t < t1; ++t) {
      if (next_row0 >= 0) prefetch_row<DT, D>(L.k, next_row0 + (t - t0));
      score_row<DT, D>(query, G, L.k, L.k_scale, row0 + (t - t0), w + (t - task.begin), n);
    }
    if (task.soft_cap > 0.f) {
      for (int h = 0; h < G; ++h) {
        for (int64_t i = first - task.begin; i < t1 - task.begin; ++i) w[h * n + i] = soft_cap(w[h * n + i], task.soft_cap);
      }
    }
    for (int h = 0; h < G; ++h) {
      float block_max = -INFINITY;
      for (int64_t i = t0 - task.begin; i < t1 - task.begin; ++i) block_max = fmaxf(block_max, w[h * n + i]);
      bmax[h * n_blocks + b] = block_max;
      m[h] = fmaxf(m[h], block_max);
    }
  }

  // Logits become weights exp(s - m); per-block sums feed l and the routing decisions.
  for (int h = 0; h < G; ++h) {
    for (int b = 0; b < n_blocks; ++b) {
      int64_t i0 = static_cast<int64_t>(b) * PT;
      bsum[h * n_blocks + b] = exp_and_sum(w + h * n + i0, min64(i0 + PT, n) - i0, m[h]);
    }
  }

  // Routing: which blocks' V to skip.
  unsigned char* skip = scratch.skip;
  memset(skip, 0, static_cast<size_t>(n_blocks > 0 ? n_blocks : 0));
  const float* vnorm = L.vnorm;
  auto block_vnorm = [&](int b) {
    int64_t page = task.pages[(task.begin / PT) + b];
    return vnorm[page * L.kv_heads + task.kv_head];
  };
  // The tree-min bound's view of the split (tree_min_bound.h): pages in sequence numbering,
  // the nodes' lambdas from the pages that close them, where the layer holds those pages.
  const int64_t first_page = task.begin / PT;
  const int64_t sequence_pages = (task.length + PT - 1) / PT;
  auto page_slots = [&](int64_t page) {
    return L.vspectral + (static_cast<int64_t>(task.pages[page]) * L.kv_heads + task.kv_head) * kSpectralSlots;
  };
  // A node's lambda from `slots` (plain or centred) of the page that closes it.
  auto lambda_from = [&](auto slots) {
    return [&, slots](int level, int64_t node) {
      const int64_t last = node_last_page(level, node);
      return last < sequence_pages ? slots(last)[level] : INFINITY;
    };
  };
  auto node_lambda = lambda_from(page_slots);
  float* bsum2 = scratch.block_sum2;
  auto skipped_page = [&](int h, int b) {
    return TreePage{bsum[h * n_blocks + b], bsum2[h * n_blocks + b], block_vnorm(b), page_slots(first_page + b)[0]};
  };
  // The same over the rows minus the layer's reference, where it is frozen.
  const float* reference = L.reference ? L.reference + static_cast<int64_t>(task.kv_head) * D : nullptr;
  auto centred_slots = [&](int64_t page) {
    return L.vcentred + (static_cast<int64_t>(task.pages[page]) * L.kv_heads + task.kv_head) * kCentredSlots;
  };
  auto centred_lambda = lambda_from(centred_slots);
  auto skipped_centred = [&](int h, int b) {
    return centred_page(bsum[h * n_blocks + b], bsum2[h * n_blocks + b], centred_slots(first_page + b));
  };
  if (R.mode != SR_ROUTING_OFF) {
    for (int h = 0; h < G; ++h) {
      for (int b = 0; b < n_blocks; ++b) {
        const float* wb = w + h * n + static_cast<int64_t>(b) * PT;
        const int64_t count = min64(static_cast<int64_t>(b + 1) * PT, n) - static_cast<int64_t>(b) * PT;
        float sum2 = 0.f;
        for (int64_t i = 0; i < count; ++i) sum2 += wb[i] * wb[i];
        bsum2[h * n_blocks + b] = sum2;
      }
    }
    AnchorSet anchor = anchor_set(task.length, R.sink_tokens, R.window_tokens, task.visible);
    float m_ref[kMaxGroup], z[kMaxGroup], anchor_norm[kMaxGroup];
    score_anchor<DT, D>(L, R, task, query, anchor, scratch, m_ref, z, anchor_norm);
    auto is_anchor = [&](int b) {
      int64_t t0 = task.begin + static_cast<int64_t>(b) * PT;
      return range_touches_anchor(t0, min64(t0 + PT, task.end), anchor);
    };
    if (R.mode == SR_ROUTING_TAU) {
      for (int b = 0; b < n_blocks; ++b) {
        if (is_anchor(b)) continue;
        bool all = true;
        for (int h = 0; h < G && all; ++h) {
          all = tau_skips(bmax[h * n_blocks + b], fmaxf(m_ref[h], m[h]), R.tau);
        }
        skip[b] = all;
      }
    } else {  // budget: smallest block maxima first, while this split's share holds
      float allowance[kMaxGroup], to_ref[kMaxGroup];
      TreeWalk walk[kMaxGroup], walk_centred[kMaxGroup];
      // This split's share of the attended tokens (a window's masked rows are not its own).
      const float share = static_cast<float>(task.end - task.first_row) /
                          static_cast<float>(attended_tokens(task.visible, task.length));
      for (int h = 0; h < G; ++h) {
        allowance[h] = budget_allowance(R.error_budget, anchor_norm[h], z[h], share);
        to_ref[h] = expf(fminf(m[h] - m_ref[h], 80.f));  // frame m -> frame m_ref
        walk[h] = tree_walk_start(first_page, first_page + n_blocks, scratch.walk + h * kMaxWalkFloats);
        if (reference) {
          walk_centred[h] = tree_walk_start(first_page, first_page + n_blocks, scratch.walk + (kMaxGroup + h) * kMaxWalkFloats);
        }
      }
      int* order = scratch.order;
      int n_order = 0;
      for (int b = 0; b < n_blocks; ++b) {
        if (!is_anchor(b)) order[n_order++] = b;
      }
      // A block's key: its largest logit over the group, relative to each head's reference.
      float* keys = scratch.keys;
      for (int i = 0; i < n_order; ++i) {
        int b = order[i];
        keys[b] = budget_order_key(bmax + b, n_blocks, m_ref, G);
      }
      sort_by_key(order, n_order, keys);
      // A block's cost is what skipping it adds to each head's tree-min bound: the smaller of
      // the plain and the centred one, where the reference is frozen.
      for (int i = 0; i < n_order; ++i) {
        int b = order[i];
        bool fits = true;
        for (int h = 0; h < G && fits; ++h) {
          float total = tree_walk_add(walk[h], first_page + b, skipped_page(h, b), node_lambda, false);
          if (reference) {
            total = fminf(total, tree_walk_add(walk_centred[h], first_page + b, skipped_centred(h, b), centred_lambda, false));
          }
          fits = total * to_ref[h] <= allowance[h];
        }
        if (!fits) break;
        for (int h = 0; h < G; ++h) {
          tree_walk_add(walk[h], first_page + b, skipped_page(h, b), node_lambda, true);
          if (reference) tree_walk_add(walk_centred[h], first_page + b, skipped_centred(h, b), centred_lambda, true);
        }
        skip[b] = 1;
      }
    }
  }

  // Pass 2: V of the kept blocks; skipped blocks stay in l and in the bound.
  memset(task.o, 0, sizeof(float) * G * D);
  for (int h = 0; h < G; ++h) task.partial[h] = SoftmaxPartial{m[h], 0.f, 0.f, 0.f};
  int64_t skipped = 0;
  int next_kept = 0;  // the next block whose V is read, to prefetch it one block ahead
  while (next_kept < n_blocks && skip[next_kept]) ++next_kept;
  for (int b = 0; b < n_blocks; ++b) {
    if (skip[b]) {
      for (int h = 0; h < G; ++h) {
        float s = bsum[h * n_blocks + b];
        task.partial[h].l += s;
        task.partial[h].skipped_l += s;
      }
      ++skipped;
      continue;
    }
    int64_t t0 = task.begin + static_cast<int64_t>(b) * PT;
    int64_t t1 = min64(t0 + PT, task.end);
    if (t0 < task.first_row) t0 = task.first_row;  // a window's first page: from its first token
    int64_t row0 = row_of(L, task.pages, task.kv_head, t0);
    next_kept = b + 1;
    while (next_kept < n_blocks && skip[next_kept]) ++next_kept;
    for (int h = 0; h < G; ++h) task.partial[h].l += bsum[h * n_blocks + b];
    int64_t w_stride = n;
    const float* wb = row_weights<DT>(w + (t0 - task.begin), &w_stride, G, L.v_scale, row0, t1 - t0,
                                      scratch.scaled_weights);
    if (next_kept < n_blocks) {
      // Half a block at a time, between the two halves of the accumulation.
      int64_t next_row0 = row_of(L, task.pages, task.kv_head, task.begin + static_cast<int64_t>(next_kept) * PT);
      int64_t half = (t1 - t0 + 1) / 2;
      for (int64_t t = 0; t < half; ++t) prefetch_row<DT, D>(L.v, next_row0 + t);
      accumulate_rows<DT, D>(wb, w_stride, G, L.v, row0, half, task.o);
      for (int64_t t = half; t < PT; ++t) prefetch_row<DT, D>(L.v, next_row0 + t);
      accumulate_rows<DT, D>(wb + half, w_stride, G, L.v, row0 + half, t1 - t0 - half, task.o);
    } else {
      accumulate_rows<DT, D>(wb, w_stride, G, L.v, row0, t1 - t0, task.o);
    }
  }
  // The certified bound of what was skipped: the split's tree-min bound, per head; where the
  // centred rows' bound is smaller, the head's output takes the skipped mass times the
  // reference, and that bound covers what is left out.
  for (int h = 0; h < G && skipped > 0; ++h) {
    const float plain = tree_min_bound(
        first_page, first_page + n_blocks,
        [&](int64_t page) { return skip[page - first_page] ? skipped_page(h, static_cast<int>(page - first_page)) : TreePage{}; },
        node_lambda);
    task.partial[h].skipped_err = plain;
    if (!reference) continue;
    const float centred = tree_min_bound(
        first_page, first_page + n_blocks,
        [&](int64_t page) { return skip[page - first_page] ? skipped_centred(h, static_cast<int>(page - first_page)) : TreePage{}; },
        centred_lambda);
    if (!compensation_pays(plain, centred)) continue;
    task.partial[h].skipped_err = centred;
    const float mass = task.partial[h].skipped_l;
    for (int d = 0; d < D; ++d) task.o[h * D + d] += mass * reference[d];
  }
  task.blocks_total = n_blocks;
  task.blocks_skipped = skipped;
}

template <sr_dtype DT>
void run_split_dtype(const LayerView& L, const RoutingConfig& R, SplitTask& task) {
  switch (L.head_dim) {
    case 64: return run_split_impl<DT, 64>(L, R, task);
    case 128: return run_split_impl<DT, 128>(L, R, task);
    default: return run_split_impl<DT, 256>(L, R, task);
  }
}

}  // namespace

void run_split(const LayerView& L, const RoutingConfig& R, SplitTask& task) {
  switch (L.dtype) {
    case SR_DTYPE_F32: return run_split_dtype<SR_DTYPE_F32>(L, R, task);
    case SR_DTYPE_F16: return run_split_dtype<SR_DTYPE_F16>(L, R, task);
    case SR_DTYPE_FP8_E4M3: return run_split_dtype<SR_DTYPE_FP8_E4M3>(L, R, task);
    default: return run_split_dtype<SR_DTYPE_BF16>(L, R, task);
  }
}

}  // namespace sr::cpu::SR_CPU_ISA
