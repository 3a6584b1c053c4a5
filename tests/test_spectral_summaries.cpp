// The spectral summaries the CPU storage keeps for the tree-min bound (tree_min_bound.h,
// docs/ARCHITECTURE.md "Spectral summaries") against exact eigenvalues of the rows each one
// covers: after one-token appends, bulk appends, fork, copy-on-write, truncate and re-append,
// every finite summary is at least the exact value for the sequence's current rows, and every
// full page (and every node a full page closes) has been summarized. The same for the summaries
// of the rows minus the layer's frozen reference (reference_compensation.h), which freezes when
// a sequence's first 64 pages are full.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/kv_cache.h"
#include "cpu/cpu_backend.h"
#include "exact_eigen.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

struct Checked {
  int64_t finite = 0;  // summaries compared with the exact value
  int64_t fresh = 0;   // of which on full pages
};

// Checks every summary of every page in the sequence's table against its rows' exact lambda.
// Rows of a page past the layer's length are not the sequence's: those slots are not read by a
// decode and are not checked.
Checked check_sequence(sr_kv_cache* cache, sr_seq_id id, const CacheShape& shape) {
  Checked checked;
  const Sequence& seq = cache->sequences.at(id);
  const int32_t D = shape.head_dim, PT = shape.page_tokens, H = shape.kv_heads;
  for (int32_t layer = 0; layer < shape.layers; ++layer) {
    const int64_t length = seq.lengths[layer];
    if (length == 0) continue;
    std::vector<float> v(static_cast<size_t>(length * H * D));
    read_f32(cache, id, layer, 0, length, nullptr, v.data());
    const int64_t pages = (length + PT - 1) / PT;
    const float* slots_layer = cache->storage->vspectral_layer(layer);
    for (int32_t h = 0; h < H; ++h) {
      for (int64_t lp = 0; lp < pages; ++lp) {
        const float* slots = slots_layer + (static_cast<int64_t>(seq.pages[lp]) * H + h) * kSpectralSlots;
        const bool full = (lp + 1) * PT <= length;
        for (int level = 0; level <= kTreeLevels; ++level) {
          if (level > 0 && !page_closes_node(lp, level)) break;
          const int64_t first = (lp + 1 - (int64_t{1} << (2 * level))) * PT;
          const int64_t end = std::min((lp + 1) * PT, length);
          if (!std::isfinite(slots[level])) {
            EXPECT_FALSE(full) << "layer " << layer << " kv-head " << h << " page " << lp << " level " << level
                               << ": a full page is summarized";
            continue;
          }
          std::vector<float> rows;
          for (int64_t t = first; t < end; ++t) {
            const float* row = v.data() + (t * H + h) * D;
            rows.insert(rows.end(), row, row + D);
          }
          const long double exact = exact_lambda_max(rows, end - first, D);
          const long double stored = level == 0 ? static_cast<long double>(slots[0]) * slots[0] : slots[level];
          EXPECT_GE(stored, exact) << "layer " << layer << " kv-head " << h << " page " << lp << " level " << level;
          // (A trimmed page's summary is of its longer content: an upper bound, not a close one.)
          if (full) EXPECT_LE(stored, exact * 1.25L + 1e-30L) << "a summary is close to the exact value";
          ++checked.finite;
          checked.fresh += full;
        }
      }
    }
  }
  return checked;
}

// The same for the centred summaries (the rows minus the layer's reference, exactly, in long
// double), and the largest centred norm of each full page. Where the layer has no reference
// yet, every centred slot must still be +inf.
Checked check_centred(sr_kv_cache* cache, sr_seq_id id, const CacheShape& shape) {
  Checked checked;
  const Sequence& seq = cache->sequences.at(id);
  const int32_t D = shape.head_dim, PT = shape.page_tokens, H = shape.kv_heads;
  for (int32_t layer = 0; layer < shape.layers; ++layer) {
    const int64_t length = seq.lengths[layer];
    if (length == 0) continue;
    const float* reference = cache->storage->reference_layer(layer);
    std::vector<float> v(static_cast<size_t>(length * H * D));
    read_f32(cache, id, layer, 0, length, nullptr, v.data());
    const int64_t pages = (length + PT - 1) / PT;
    const float* slots_layer = cache->storage->vcentred_layer(layer);
    for (int32_t h = 0; h < H; ++h) {
      for (int64_t lp = 0; lp < pages; ++lp) {
        const float* slots = slots_layer + (static_cast<int64_t>(seq.pages[lp]) * H + h) * kCentredSlots;
        const bool full = (lp + 1) * PT <= length;
        const std::string where = "layer " + std::to_string(layer) + " kv-head " + std::to_string(h) + " page " +
                                  std::to_string(lp);
        if (!reference) {
          for (int slot = 0; slot < kCentredSlots; ++slot) EXPECT_EQ(slots[slot], INFINITY) << where << ": no reference yet";
          continue;
        }
        const float* c = reference + static_cast<int64_t>(h) * D;
        auto centred_row = [&](int64_t t, int32_t d) {
          return static_cast<long double>(v[(t * H + h) * D + d]) - static_cast<long double>(c[d]);
        };
        for (int level = 0; level <= kTreeLevels; ++level) {
          if (level > 0 && !page_closes_node(lp, level)) break;
          if (!std::isfinite(slots[level])) continue;
          const int64_t first = (lp + 1 - (int64_t{1} << (2 * level))) * PT;
          const int64_t end = std::min((lp + 1) * PT, length);
          std::vector<long double> rows;
          for (int64_t t = first; t < end; ++t) {
            for (int32_t d = 0; d < D; ++d) rows.push_back(centred_row(t, d));
          }
          const long double exact = exact_lambda_max(rows, end - first, D);
          const long double stored = level == 0 ? static_cast<long double>(slots[0]) * slots[0] : slots[level];
          EXPECT_GE(stored, exact) << where << " level " << level;
          if (full) EXPECT_LE(stored, exact * 1.25L + 1e-30L) << where << " level " << level << ": close to the exact value";
          ++checked.finite;
          checked.fresh += full;
        }
        if (std::isfinite(slots[kCentredNormSlot])) {
          long double largest = 0.0L;
          for (int64_t t = lp * PT; t < std::min((lp + 1) * PT, length); ++t) {
            long double sum = 0.0L;
            for (int32_t d = 0; d < D; ++d) sum += centred_row(t, d) * centred_row(t, d);
            largest = std::max(largest, std::sqrt(sum));
          }
          EXPECT_GE(static_cast<long double>(slots[kCentredNormSlot]), largest) << where << ": largest centred norm";
        } else {
          EXPECT_FALSE(full && std::isfinite(slots[0])) << where << ": a centred sigma without its norm";
        }
      }
    }
  }
  return checked;
}

// Values with structure (a shared mean per kv-head and a few strong directions) so lambda_max
// stands well above the rest of the spectrum, mixed with Gaussian noise.
std::vector<float> structured_rows(std::mt19937_64& rng, int64_t n, const CacheShape& shape, float scale) {
  std::vector<float> rows = gaussian(rng, static_cast<size_t>(n * shape.kv_heads * shape.head_dim), scale);
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t h = 0; h < shape.kv_heads; ++h) {
      for (int32_t d = 0; d < shape.head_dim; ++d) rows[(t * shape.kv_heads + h) * shape.head_dim + d] += 0.5f * ((d + h) % 3 == 0);
    }
  }
  return rows;
}

TEST(SpectralSummaries, StayUpperBoundsThroughAppendForkTruncateAndReappend) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  CacheShape shape;
  shape.layers = 2;
  shape.kv_heads = 2;
  shape.head_dim = 64;
  shape.capacity = 16 * 400;
  auto ctx = make_context(SR_BACKEND_CPU);
  auto cache = make_cache(ctx.get(), shape);
  sr_seq_id a;
  ASSERT_EQ(sr_seq_add(cache.get(), &a), SR_OK);
  // 600 tokens one at a time on layer 0 (pages and nodes of 4 and 16 pages close one by one), in
  // bulk on layer 1 (the largest nodes: the next test).
  const int64_t n = 600;
  auto k = structured_rows(rng, n, shape, 1.f), v = structured_rows(rng, n, shape, 1.f);
  const int64_t row = int64_t{shape.kv_heads} * shape.head_dim;
  for (int64_t t = 0; t < n; ++t) append_f32(cache.get(), a, 0, 1, k.data() + t * row, v.data() + t * row);
  append_f32(cache.get(), a, 1, 250, k.data(), v.data());
  append_f32(cache.get(), a, 1, n - 250, k.data() + 250 * row, v.data() + 250 * row);
  Checked c = check_sequence(cache.get(), a, shape);
  EXPECT_EQ(c.fresh, 2 * 2 * (37 + 9 + 2)) << "37 full pages, 9 + 2 closed nodes per kv-head and layer";

  // A fork shares every page; truncating it mid-page and mid-node and appending other rows
  // copies the shared page and rewrites the nodes it belongs to.
  sr_seq_id b;
  ASSERT_EQ(sr_seq_fork(cache.get(), a, &b), SR_OK);
  ASSERT_EQ(sr_seq_truncate(cache.get(), b, 520), SR_OK);
  auto k2 = structured_rows(rng, 80, shape, 3.f), v2 = structured_rows(rng, 80, shape, 3.f);
  for (int32_t layer = 0; layer < 2; ++layer) {
    for (int64_t t = 0; t < 80; ++t) append_f32(cache.get(), b, layer, 1, k2.data() + t * row, v2.data() + t * row);
  }
  check_sequence(cache.get(), a, shape);
  c = check_sequence(cache.get(), b, shape);
  EXPECT_EQ(c.fresh, 2 * 2 * (37 + 9 + 2));

  // Truncating the original to a page held by it alone trims that page: its stale summaries
  // still bound the rows kept; re-appending refreshes them.
  ASSERT_EQ(sr_seq_truncate(cache.get(), b, 550), SR_OK);
  ASSERT_EQ(sr_seq_truncate(cache.get(), b, 541), SR_OK);
  c = check_sequence(cache.get(), b, shape);
  EXPECT_GT(c.finite, c.fresh) << "the trimmed page keeps its summaries of the longer content";
  for (int32_t layer = 0; layer < 2; ++layer) append_f32(cache.get(), b, layer, 60, k.data(), v.data());
  c = check_sequence(cache.get(), b, shape);
  EXPECT_EQ(c.fresh, 2 * 2 * (37 + 9 + 2));
  ASSERT_EQ(sr_seq_remove(cache.get(), a), SR_OK);
  check_sequence(cache.get(), b, shape);
}

// The reference freezes when a write fills a sequence's 64th page: one token at a time (layer
// 0) and in one bulk write (layer 1). A sequence filled before that keeps no centred summaries
// of those pages (its later pages get them); the sequence that froze it has all of its own.
// Fork, truncate within and below the reference's pages, and re-append keep every centred
// summary an upper bound of the current rows.
TEST(SpectralSummaries, CentredSummariesFromTheFrozenReferenceStayUpperBounds) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  CacheShape shape;
  shape.layers = 2;
  shape.kv_heads = 2;
  shape.head_dim = 64;
  shape.capacity = 16 * 400;
  auto ctx = make_context(SR_BACKEND_CPU);
  auto cache = make_cache(ctx.get(), shape);
  const int64_t row = int64_t{shape.kv_heads} * shape.head_dim;
  sr_seq_id early, a;
  ASSERT_EQ(sr_seq_add(cache.get(), &early), SR_OK);
  ASSERT_EQ(sr_seq_add(cache.get(), &a), SR_OK);
  auto k0 = structured_rows(rng, 200, shape, 1.f), v0 = structured_rows(rng, 200, shape, 1.f);
  for (int32_t layer = 0; layer < 2; ++layer) append_f32(cache.get(), early, layer, 120, k0.data(), v0.data());
  EXPECT_EQ(check_centred(cache.get(), early, shape).finite, 0) << "no reference before 64 full pages";

  const int64_t n = 1100;
  auto k = structured_rows(rng, n, shape, 1.f), v = structured_rows(rng, n, shape, 1.f);
  for (int64_t t = 0; t < n; ++t) append_f32(cache.get(), a, 0, 1, k.data() + t * row, v.data() + t * row);
  // Layer 1 in one bulk write, with a non-finite value in page 5 of kv-head 1: left out of the
  // reference (the float64 mean of the other 1023 rows), and its page's and nodes' slots +inf.
  std::vector<float> v1 = v;
  v1[(5 * 16 + 3) * row + shape.head_dim + 7] = INFINITY;
  append_f32(cache.get(), a, 1, n, k.data(), v1.data());
  ASSERT_NE(cache->storage->reference_layer(0), nullptr);
  ASSERT_NE(cache->storage->reference_layer(1), nullptr);
  {
    std::vector<float> stored(static_cast<size_t>(kReferencePages * 16 * row));
    read_f32(cache.get(), a, 1, 0, kReferencePages * 16, nullptr, stored.data());
    for (int32_t h = 0; h < shape.kv_heads; ++h) {
      for (int32_t d = 0; d < shape.head_dim; ++d) {
        double sum = 0.0;
        int64_t finite = 0;
        for (int64_t t = 0; t < kReferencePages * 16; ++t) {
          const float* r = stored.data() + t * row + h * shape.head_dim;
          if (!std::all_of(r, r + shape.head_dim, [](float x) { return std::isfinite(x); })) continue;
          sum += r[d];
          ++finite;
        }
        EXPECT_EQ(finite, kReferencePages * 16 - (h == 1));
        EXPECT_EQ(cache->storage->reference_layer(1)[h * shape.head_dim + d], static_cast<float>(sum / finite))
            << "kv-head " << h << " dimension " << d;
      }
    }
  }
  Checked c = check_centred(cache.get(), a, shape);
  EXPECT_EQ(c.fresh, 2 * 2 * (68 + 17 + 4 + 1) - (1 + 1 + 1 + 1))
      << "68 full pages, 17 + 4 + 1 closed nodes per kv-head and layer; none over the non-finite row";
  EXPECT_EQ(check_centred(cache.get(), early, shape).finite, 0) << "pages filled before the reference froze";
  for (int32_t layer = 0; layer < 2; ++layer) append_f32(cache.get(), early, layer, 80, k0.data() + 120 * row, v0.data() + 120 * row);
  c = check_centred(cache.get(), early, shape);
  EXPECT_EQ(c.fresh, 2 * 2 * (5 + 2)) << "pages 7-11 filled after it froze, and the nodes they close (pages 4-7, 8-11)";

  sr_seq_id b;
  ASSERT_EQ(sr_seq_fork(cache.get(), a, &b), SR_OK);
  for (int64_t cut : {1030, 1000}) {
    ASSERT_EQ(sr_seq_truncate(cache.get(), b, cut), SR_OK);
    check_centred(cache.get(), b, shape);
    auto k2 = structured_rows(rng, n - cut, shape, 3.f), v2 = structured_rows(rng, n - cut, shape, 3.f);
    for (int32_t layer = 0; layer < 2; ++layer) append_f32(cache.get(), b, layer, n - cut, k2.data(), v2.data());
    c = check_centred(cache.get(), b, shape);
    EXPECT_EQ(c.fresh, 2 * 2 * (68 + 17 + 4 + 1) - 4) << "truncated to " << cut << " and re-appended";
    check_centred(cache.get(), a, shape);
  }
}

// A node of 256 pages (level 4) from bulk appends that cut it at odd places, on an FP8 cache
// (summaries of the dequantized rows) with rows of very different sizes.
TEST(SpectralSummaries, LargestNodesFromBulkAppendsOnAnFp8Cache) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  CacheShape shape;
  shape.kv_heads = 1;
  shape.head_dim = 64;
  shape.dtype = SR_DTYPE_FP8_E4M3;
  shape.capacity = 16 * 300;
  auto ctx = make_context(SR_BACKEND_CPU);
  auto cache = make_cache(ctx.get(), shape);
  sr_seq_id a;
  ASSERT_EQ(sr_seq_add(cache.get(), &a), SR_OK);
  const int64_t n = 4200;
  auto k = structured_rows(rng, n, shape, 1.f), v = structured_rows(rng, n, shape, 1.f);
  for (int64_t t = 0; t < n; ++t) {
    const float size = std::exp2(static_cast<float>(static_cast<int>(rng() % 24)) - 12.f);
    for (int32_t d = 0; d < shape.head_dim; ++d) v[t * shape.head_dim + d] *= size;
  }
  int64_t done = 0;
  for (int64_t part : {1000, 2333, 867}) {
    append_f32(cache.get(), a, 0, part, k.data() + done * shape.head_dim, v.data() + done * shape.head_dim);
    done += part;
  }
  const Checked c = check_sequence(cache.get(), a, shape);
  EXPECT_EQ(c.fresh, 262 + 65 + 16 + 4 + 1);
}

}  // namespace
}  // namespace sr::testing
