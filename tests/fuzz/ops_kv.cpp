// sr_kv_append and sr_kv_read with arbitrary counts, ranges, dtypes and strides.
#include <cstring>
#include <limits>

#include "dtype_rounding.h"
#include "io_layout.h"

namespace sr_fuzz {
namespace {

constexpr int64_t kMaxRowsPerCall = 40;

// Byte < 0xF0: a small count; else an edge value.
int64_t pick_count(uint8_t b, int64_t small_range, int64_t (*edge)(uint8_t)) {
  return b < 0xF0 ? 1 + b % small_range : edge(b);
}

}  // namespace

void Harness::kv_append() {
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    float row[64] = {};
    e.check(sr_kv_append(nullptr, 1, 0, 1, row, row, nullptr), "sr_kv_append(NULL cache)");
    return;
  }
  const ShadowCache& model = *slot->model;
  const sr_kv_cache_options& o = model.options();
  Expectation e;
  const sr_seq_id seq = pick_sequence(*slot, e);
  const int32_t layer = pick_layer(*slot, e);
  const int64_t n_tokens = pick_count(in_.u8(), kMaxRowsPerCall, edge_int64);
  const bool small = n_tokens >= 1 && n_tokens <= kMaxRowsPerCall;
  if (n_tokens < 1) e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  if (n_tokens > (int64_t{1} << 30)) e.must_fail({SR_ERR_CACHE_FULL, SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  const uint8_t nulls = in_.u8() % 16;
  if (nulls == 1 || nulls == 2) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  const int64_t rows = small ? n_tokens : 1;  // the call must fail otherwise: one row of buffer is enough
  IoLayout L = pick_io(in_, o, rows, e);
  ValueSource values(in_.u8() + 256 * calls_, in_.u8());
  if (!L.allocatable && !e.expects_failure()) return;  // a valid layout too large to allocate here

  const ShadowSequence* s = slot->model->find(seq);
  if (s && layer >= 0 && layer < o.num_layers && small &&
      model.pages_needed(*s, layer, n_tokens) > model.free_pages()) {
    e.must_fail({SR_ERR_CACHE_FULL});
  }

  // Padding holds NaN: a library that read outside the rows would store it and fail read-back.
  std::vector<unsigned char> k(L.allocatable ? make_buffer(L, 0xFF) : std::vector<unsigned char>(4096, 0xFF));
  std::vector<unsigned char> v(k.size(), 0xFF);
  std::vector<float> k_rows, v_rows;  // what the cache must hold after success
  if (L.allocatable) {
    for (int64_t t = 0; t < rows; ++t) {
      for (int32_t h = 0; h < o.num_kv_heads; ++h) {
        for (int32_t d = 0; d < o.head_dim; ++d) {
          store_element(k.data(), L.offset(t, h) + d, L.dtype, values.next());
          store_element(v.data(), L.offset(t, h) + d, L.dtype, values.next());
        }
      }
    }
    // Read after writing: with overlapping rows the later row wins, as the library sees it.
    for (int64_t t = 0; t < rows; ++t) {
      for (int32_t h = 0; h < o.num_kv_heads; ++h) {
        for (int32_t d = 0; d < o.head_dim; ++d) {
          k_rows.push_back(load_element(k.data(), L.offset(t, h) + d, L.dtype));
          v_rows.push_back(load_element(v.data(), L.offset(t, h) + d, L.dtype));
        }
      }
    }
    round_rows_to(o.dtype, o.head_dim, k_rows);
    round_rows_to(o.dtype, o.head_dim, v_rows);
  }
  slot->contents_dirty = true;
  sr_status st = sr_kv_append(slot->handle, seq, layer, n_tokens, nulls == 1 ? nullptr : k.data(),
                              nulls == 2 ? nullptr : v.data(), L.arg);
  if (e.check(st, "sr_kv_append")) {
    FUZZ_CHECK(L.allocatable && small, "sr_kv_append of %lld tokens succeeded with an unaddressable layout",
               static_cast<long long>(n_tokens));
    slot->model->append(seq, layer, k_rows, v_rows);
  }
}

void Harness::kv_read() {
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    float row[64];
    e.check(sr_kv_read(nullptr, 1, 0, 0, 1, row, row, nullptr), "sr_kv_read(NULL cache)");
    return;
  }
  const ShadowCache& model = *slot->model;
  const sr_kv_cache_options& o = model.options();
  Expectation e;
  const sr_seq_id seq = pick_sequence(*slot, e);
  const int32_t layer = pick_layer(*slot, e);
  const ShadowSequence* s = model.find(seq);
  const int64_t length = s && layer >= 0 && layer < o.num_layers ? model.length(*s, layer) : 0;
  uint8_t b = in_.u8();
  const int64_t first = b < 0xF0 ? b % (length + 2) : edge_int64(b);
  b = in_.u8();
  const int64_t room = first >= 0 && first <= length ? length - first : 0;
  const int64_t n_tokens = pick_count(b, room + 1, edge_int64);
  const bool small = n_tokens >= 1 && n_tokens <= 4096;  // edge values are far larger
  if (n_tokens < 1 || !small) {
    e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  } else if (s && (first < 0 || first > length ||
                   static_cast<__int128>(first) + n_tokens > static_cast<__int128>(length))) {
    e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  }
  const uint8_t nulls = in_.u8() % 8;  // 1: K only, 2: V only, 3: neither
  if (nulls == 3) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  const int64_t rows = small ? n_tokens : 1;
  IoLayout L = pick_io(in_, o, rows, e);
  if (!L.allocatable && !e.expects_failure()) return;

  const unsigned char kUntouched = 0xA5;
  std::vector<unsigned char> k(L.allocatable ? make_buffer(L, kUntouched) : std::vector<unsigned char>(4096, kUntouched));
  std::vector<unsigned char> v(k.size(), kUntouched);
  const bool want_k = nulls != 2 && nulls != 3, want_v = nulls != 1 && nulls != 3;
  sr_status st = sr_kv_read(slot->handle, seq, layer, first, n_tokens, want_k ? k.data() : nullptr,
                            want_v ? v.data() : nullptr, L.arg);
  const bool ok = e.check(st, "sr_kv_read");
  if (ok) {
    FUZZ_CHECK(L.allocatable && small, "sr_kv_read of %lld tokens at %lld succeeded with an unaddressable layout",
               static_cast<long long>(n_tokens), static_cast<long long>(first));
  }
  // Expected buffers: rows written on success (unless rows overlap: then which row wins is
  // undefined), every other byte untouched.
  std::vector<unsigned char> k_expected(k.size(), kUntouched), v_expected(v.size(), kUntouched);
  if (ok && L.rows_overlap) return;
  if (ok) {
    const int64_t row = model.row_elements();
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int32_t h = 0; h < o.num_kv_heads; ++h) {
        for (int32_t d = 0; d < o.head_dim; ++d) {
          const size_t i = static_cast<size_t>((first + t) * row + h * o.head_dim + d);
          if (want_k) store_element(k_expected.data(), L.offset(t, h) + d, L.dtype, s->k[layer][i]);
          if (want_v) store_element(v_expected.data(), L.offset(t, h) + d, L.dtype, s->v[layer][i]);
        }
      }
    }
  }
  for (size_t i = 0; i < k.size(); ++i) {
    FUZZ_CHECK(k[i] == k_expected[i] && v[i] == v_expected[i],
               "sr_kv_read (%s) of seq %lld layer %d tokens [%lld, +%lld), io dtype %d strides %lld/%lld: byte %zu is "
               "K %02x V %02x, expected K %02x V %02x", ok ? "succeeded" : "failed", static_cast<long long>(seq),
               layer, static_cast<long long>(first), static_cast<long long>(n_tokens), L.dtype,
               static_cast<long long>(L.token_stride), static_cast<long long>(L.head_stride), i, k[i], v[i],
               k_expected[i], v_expected[i]);
  }
}

}  // namespace sr_fuzz
