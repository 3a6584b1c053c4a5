// Statistics, handle queries, names and versions, and the *_default functions.
#include <cmath>
#include <cstring>
#include <vector>

#include "c_callers.h"
#include "harness.h"

namespace sr_fuzz {
namespace {

constexpr unsigned char kUntouched = 0xA5;

bool untouched(const unsigned char* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] != kUntouched) return false;
  }
  return true;
}

// The documented defaults of each struct (sinkrouter.h).
bool has_defaults(const sr_context_options& o) {
  return o.backend == SR_BACKEND_AUTO && o.device_index == 0 && o.num_threads == 0 && o.stream == nullptr;
}
bool has_defaults(const sr_kv_cache_options& o) {
  return o.head_dim == 128 && o.page_tokens == 16 && o.dtype == SR_DTYPE_BF16 && o.max_batch == 256 &&
         o.max_q_heads == 0;
}
bool has_defaults(const sr_kv_io& o) {
  return o.dtype == SR_DTYPE_CACHE && o.token_stride == 0 && o.head_stride == 0 && o.memory == SR_MEMORY_HOST &&
         o.stream == nullptr;
}
bool has_defaults(const sr_decode_args& o) {
  return o.q_dtype == SR_DTYPE_F32 && o.out_dtype == SR_DTYPE_F32 && o.scale == 0.f && o.routing == SR_ROUTING_OFF &&
         o.tau == 12.f && o.sink_tokens == 4 && o.window_tokens == 64 && o.error_budget == 1e-3f &&
         o.head_skipped_mass == nullptr && o.head_error_bound == nullptr && o.collect_stats == 0 &&
         o.stream == nullptr && o.route_from_tokens == -1 && o.sink_logits == nullptr && o.lse == nullptr &&
         o.window_left == -1 && o.window_sink_tokens == 0 && o.logit_soft_cap == 0.f;
}
bool has_defaults(const sr_merge_args& o) {
  return o.num_states == 0 && o.rows == 0 && o.head_dim == 0 && o.state_outs == nullptr &&
         o.state_dtype == SR_DTYPE_F32 && o.state_lses == nullptr && o.state_bounds == nullptr && o.out == nullptr &&
         o.out_dtype == SR_DTYPE_F32 && o.lse == nullptr && o.bound == nullptr && o.stream == nullptr;
}

template <class T>
void check_default_fn(sr_status (*fill)(T*, size_t), const char* name, size_t struct_size, bool null_ptr,
                      Expectation e) {
  if (null_ptr) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  std::vector<unsigned char> bytes(sizeof(T) + 32, kUntouched);
  sr_status st = fill(null_ptr ? nullptr : reinterpret_cast<T*>(bytes.data()), struct_size);
  if (!e.check(st, name)) {
    FUZZ_CHECK(untouched(bytes.data(), bytes.size()), "a failed %s wrote into the struct", name);
    return;
  }
  FUZZ_CHECK(untouched(bytes.data() + struct_size, bytes.size() - struct_size), "%s wrote past struct_size %zu", name,
             struct_size);
  if (struct_size == sizeof(T)) {
    T value;
    std::memcpy(&value, bytes.data(), sizeof value);
    FUZZ_CHECK(value.struct_size == sizeof(T) && has_defaults(value), "%s did not fill the documented defaults", name);
  }
}

}  // namespace

void Harness::stats() {
  ContextSlot& c = *pick_context();
  const uint8_t b = in_.u8();
  Expectation e;
  if (!c.handle || b % 4 == 3) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  sr_context* handle = b % 4 == 3 ? nullptr : c.handle;
  if (b % 4 == 2) {
    if (e.check(sr_context_reset_stats(handle), "sr_context_reset_stats")) {
      c.stats_steps = c.stats_heads = c.stats_run_dense = 0;
      c.run_dense_known = true;
    }
    return;
  }
  const size_t size = pick_struct_size(sizeof(sr_decode_stats), e);
  const bool null_out = (b & 0xC0) == 0xC0;
  if (null_out) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  std::vector<unsigned char> bytes(sizeof(sr_decode_stats) + 32, kUntouched);
  sr_status st = sr_context_stats(handle, null_out ? nullptr : reinterpret_cast<sr_decode_stats*>(bytes.data()), size);
  if (!e.check(st, "sr_context_stats")) {
    FUZZ_CHECK(untouched(bytes.data(), bytes.size()), "a failed sr_context_stats wrote its output");
    return;
  }
  FUZZ_CHECK(untouched(bytes.data() + size, bytes.size() - size), "sr_context_stats wrote past struct_size");
  if (size != sizeof(sr_decode_stats)) return;
  sr_decode_stats s;
  std::memcpy(&s, bytes.data(), sizeof s);
  FUZZ_CHECK(s.struct_size == sizeof s, "stats.struct_size = %zu", s.struct_size);
  FUZZ_CHECK(s.steps == c.stats_steps && s.heads == c.stats_heads,
             "stats: %lld steps / %lld heads, the harness counted %lld / %lld", static_cast<long long>(s.steps),
             static_cast<long long>(s.heads), static_cast<long long>(c.stats_steps),
             static_cast<long long>(c.stats_heads));
  FUZZ_CHECK(!c.run_dense_known || s.steps_run_dense == c.stats_run_dense,
             "stats: %lld steps run dense, the harness counted %lld", static_cast<long long>(s.steps_run_dense),
             static_cast<long long>(c.stats_run_dense));
  FUZZ_CHECK(s.blocks_v_skipped >= 0 && s.blocks_v_skipped <= s.blocks_total && s.heads_recomputed >= 0 &&
                 s.heads_recomputed <= s.heads,
             "stats: blocks %lld, skipped %lld, recomputed %lld of %lld heads", static_cast<long long>(s.blocks_total),
             static_cast<long long>(s.blocks_v_skipped), static_cast<long long>(s.heads_recomputed),
             static_cast<long long>(s.heads));
  FUZZ_CHECK(s.max_skipped_mass >= 0 && s.max_skipped_mass <= 1 + 1e-5 && s.max_error_bound >= 0,
             "stats: max skipped mass %g, max error bound %g", s.max_skipped_mass, s.max_error_bound);
}

void Harness::queries() {
  const uint8_t which = in_.u8() % 8;
  if (which == 1) {  // sr_kv_cache_pages with a missing handle or out-pointer
    CacheSlot* slot = pick_cache();
    const uint8_t missing = in_.u8() % 3;  // 0: the cache, 1: total, 2: free
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    int64_t total = -5, free_pages = -5;
    sr_status st = sr_kv_cache_pages(missing == 0 ? nullptr : slot->handle, missing == 1 ? nullptr : &total,
                                     missing == 2 ? nullptr : &free_pages);
    e.check(st, "sr_kv_cache_pages");
    FUZZ_CHECK(total == -5 && free_pages == -5, "a failed sr_kv_cache_pages wrote its out-parameters");
  } else if (which == 2) {  // context queries
    ContextSlot& c = *pick_context();
    Expectation e;
    if (!c.handle) e.must_fail({SR_ERR_INVALID_ARGUMENT});
    sr_backend backend = SR_BACKEND_HIP;  // sentinel: the harness never opens HIP
    int32_t threads = -9;
    const char* name = nullptr;
    if (e.check(sr_context_backend(c.handle, &backend), "sr_context_backend")) {
      FUZZ_CHECK(backend == SR_BACKEND_CPU, "backend %d", backend);
    } else {
      FUZZ_CHECK(backend == SR_BACKEND_HIP, "a failed sr_context_backend wrote its out-parameter");
    }
    if (e.check(sr_context_num_threads(c.handle, &threads), "sr_context_num_threads")) {
      FUZZ_CHECK(threads == c.threads, "%d threads, created with %d", threads, c.threads);
    }
    if (e.check(sr_context_device_name(c.handle, &name), "sr_context_device_name")) {
      FUZZ_CHECK(name && name[0], "empty device name");
    }
  } else if (which == 3) {  // names of any value
    const int value = static_cast<int8_t>(in_.u8());
    const char* status = sr_fuzz_c_status_string(value);
    const char* backend = sr_fuzz_c_backend_name(value);
    FUZZ_CHECK(status && status[0] && backend && backend[0], "a name function returned NULL or \"\" for %d", value);
    const size_t size = sr_fuzz_c_dtype_size(value);
    const size_t expected = value == SR_DTYPE_F32                               ? 4
                            : value == SR_DTYPE_F16 || value == SR_DTYPE_BF16 ? 2
                            : value == SR_DTYPE_FP8_E4M3                      ? 1
                                                                              : 0;
    FUZZ_CHECK(size == expected, "sr_dtype_size(%d) = %zu", value, size);
  } else if (which == 4) {
    FUZZ_CHECK(sr_version_number() == SR_VERSION_NUMBER && sr_abi_version() == SR_ABI_VERSION &&
                   std::strcmp(sr_version(), SR_VERSION_STRING) == 0,
               "version of the loaded library differs from the header's");
  } else {  // sr_seq_length with arbitrary arguments
    CacheSlot* slot = pick_cache();
    Expectation e;
    if (!slot->handle) {
      e.must_fail({SR_ERR_INVALID_ARGUMENT});
      int64_t length = -5;
      e.check(sr_seq_length(nullptr, 1, 0, &length), "sr_seq_length(NULL cache)");
      FUZZ_CHECK(length == -5, "a failed sr_seq_length wrote its out-parameter");
      return;
    }
    const sr_seq_id id = pick_sequence(*slot, e);
    const int32_t layer = pick_layer(*slot, e);
    const bool null_out = in_.u8() % 8 == 1;
    if (null_out) e.must_fail({SR_ERR_INVALID_ARGUMENT});
    int64_t length = -5;
    if (e.check(sr_seq_length(slot->handle, id, layer, null_out ? nullptr : &length), "sr_seq_length")) {
      FUZZ_CHECK(length == slot->model->length(*slot->model->find(id), layer), "sr_seq_length = %lld",
                 static_cast<long long>(length));
    } else {
      FUZZ_CHECK(length == -5, "a failed sr_seq_length wrote its out-parameter");
    }
  }
}

void Harness::struct_defaults() {
  const uint8_t which = in_.u8();
  Expectation e;
  const bool null_ptr = (which & 0xF0) == 0xF0;
  switch (which % 5) {
    case 0: {
      size_t size = pick_struct_size(sizeof(sr_context_options), e);
      check_default_fn(sr_context_options_default, "sr_context_options_default", size, null_ptr, e);
      break;
    }
    case 1: {
      size_t size = pick_struct_size(sizeof(sr_kv_cache_options), e);
      check_default_fn(sr_kv_cache_options_default, "sr_kv_cache_options_default", size, null_ptr, e);
      break;
    }
    case 2: {
      size_t size = pick_struct_size(sizeof(sr_kv_io), e);
      check_default_fn(sr_kv_io_default, "sr_kv_io_default", size, null_ptr, e);
      break;
    }
    case 3: {
      size_t size = pick_struct_size(sizeof(sr_decode_args), e);
      check_default_fn(sr_decode_args_default, "sr_decode_args_default", size, null_ptr, e);
      break;
    }
    default: {
      size_t size = pick_struct_size(sizeof(sr_merge_args), e);
      check_default_fn(sr_merge_args_default, "sr_merge_args_default", size, null_ptr, e);
      break;
    }
  }
}

}  // namespace sr_fuzz
