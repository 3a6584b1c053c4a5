// Public functions of the KV cache: creation, sequences, and K/V transfer.
#include <cmath>
#include <memory>
#include <mutex>

#include "core/defaults.h"
#include "core/errors.h"
#include "core/enum_bits.h"
#include "core/kv_cache.h"
#include "core/struct_args.h"

namespace sr {
namespace {

sr_kv_cache& checked(sr_kv_cache* cache) {
  require_not_null(cache, "cache");
  return *cache;
}
const sr_kv_cache& checked(const sr_kv_cache* cache) {
  require_not_null(cache, "cache");
  return *cache;
}

void validate_cache_options(const sr_kv_cache_options& o) {
  if (o.num_layers < 1 || o.num_layers > 4096) {
    fail(SR_ERR_OUT_OF_RANGE, "num_layers = %d is out of range [1, 4096]", o.num_layers);
  }
  if (o.num_kv_heads < 1 || o.num_kv_heads > 1024) {
    fail(SR_ERR_OUT_OF_RANGE, "num_kv_heads = %d is out of range [1, 1024]", o.num_kv_heads);
  }
  if (o.head_dim != 64 && o.head_dim != 128 && o.head_dim != 256) {
    fail(SR_ERR_UNSUPPORTED, "head_dim = %d is not supported (64, 128 or 256)", o.head_dim);
  }
  if (o.page_tokens != 16 && o.page_tokens != 32 && o.page_tokens != 64 && o.page_tokens != 128) {
    fail(SR_ERR_UNSUPPORTED, "page_tokens = %d is not supported (16, 32, 64 or 128)", o.page_tokens);
  }
  if (o.capacity_tokens < 1) {
    fail(SR_ERR_OUT_OF_RANGE, "capacity_tokens = %lld must be at least 1", static_cast<long long>(o.capacity_tokens));
  }
  if (!is_cache_dtype(enum_bits(o.dtype))) {
    fail(SR_ERR_UNSUPPORTED, "dtype = %d is not an sr_dtype value", enum_bits(o.dtype));
  }
  if (o.max_batch < 1 || o.max_batch > 65536) {
    fail(SR_ERR_OUT_OF_RANGE, "max_batch = %d is out of range [1, 65536]", o.max_batch);
  }
  if (o.max_q_heads < o.num_kv_heads || o.max_q_heads % o.num_kv_heads != 0) {
    fail(SR_ERR_INVALID_ARGUMENT, "max_q_heads = %d must be a multiple of num_kv_heads = %d", o.max_q_heads,
         o.num_kv_heads);
  }
  // Counted without capacity + page_tokens - 1, which overflows near INT64_MAX.
  int64_t pages = o.capacity_tokens / o.page_tokens + (o.capacity_tokens % o.page_tokens != 0);
  double bytes = 2.0 * o.num_layers * static_cast<double>(pages) * o.page_tokens * o.num_kv_heads * o.head_dim *
                 sr_dtype_size(o.dtype);
  if (pages > INT32_MAX || bytes > 9.0e18) {
    fail(SR_ERR_OUT_OF_RANGE, "capacity_tokens = %lld needs %.3g bytes: too large",
         static_cast<long long>(o.capacity_tokens), bytes);
  }
}

// The caller's buffer layout with defaults resolved, checked against the cache.
sr_kv_io resolve_io(const sr_kv_cache& cache, const sr_kv_io* io_in, int64_t n_tokens) {
  sr_kv_io io = read_struct(io_in, "sr_kv_io", kv_io_defaults);
  const sr_cache_geometry& g = cache.geometry;
  if (enum_bits(io.dtype) == SR_DTYPE_CACHE && g.dtype == SR_DTYPE_FP8_E4M3) {
    fail(SR_ERR_UNSUPPORTED,
         "io.dtype = SR_DTYPE_CACHE (or a NULL io) on an FP8 cache: its K/V travel as f32, f16 or bf16 "
         "(set io.dtype); the stored bytes mean nothing without their scales");
  }
  if (enum_bits(io.dtype) == SR_DTYPE_CACHE) io.dtype = g.dtype;
  require_buffer_dtype(enum_bits(io.dtype), "io.dtype");
  if (io.head_stride < 0 || io.token_stride < 0) {
    fail(SR_ERR_INVALID_ARGUMENT, "io strides must not be negative (token_stride = %lld, head_stride = %lld)",
         static_cast<long long>(io.token_stride), static_cast<long long>(io.head_stride));
  }
  // No real buffer spans 2^56 bytes; refusing larger layouts keeps every offset the backends
  // compute (token * token_stride + head * head_stride, in bytes) far from int64 overflow.
  constexpr __int128 kMaxSpanBytes = __int128{1} << 56;
  if (io.head_stride == 0) io.head_stride = g.head_dim;
  if (io.token_stride == 0 && __int128{g.num_kv_heads} * io.head_stride < kMaxSpanBytes) {
    io.token_stride = g.num_kv_heads * io.head_stride;
  }
  // At most 2^63 * 2^63 + 2^73: inside __int128, which a further product by the element size
  // would leave (the fuzzer found that), hence the division below.
  const __int128 last_element = __int128{n_tokens - 1} * (io.token_stride == 0 ? io.head_stride : io.token_stride) +
                                __int128{g.num_kv_heads - 1} * io.head_stride + g.head_dim;
  if (io.token_stride == 0 || n_tokens < 1 || last_element >= kMaxSpanBytes / sr_dtype_size(io.dtype)) {
    fail(SR_ERR_INVALID_ARGUMENT,
         "io strides (token_stride = %lld, head_stride = %lld) over %lld tokens span more than 2^56 bytes: "
         "no buffer is that large",
         static_cast<long long>(io.token_stride), static_cast<long long>(io.head_stride),
         static_cast<long long>(n_tokens));
  }
  // Rows may not overlap: heads inside tokens ([t][h][d]) or tokens inside heads ([h][t][d]).
  bool heads_inside = io.head_stride >= g.head_dim && io.token_stride >= g.num_kv_heads * io.head_stride;
  bool tokens_inside = io.token_stride >= g.head_dim && io.head_stride >= n_tokens * io.token_stride;
  if (!(heads_inside || (g.num_kv_heads == 1 && io.token_stride >= g.head_dim) || (n_tokens == 1 && io.head_stride >= g.head_dim) ||
        tokens_inside)) {
    fail(SR_ERR_INVALID_ARGUMENT,
         "io strides (token_stride = %lld, head_stride = %lld) make rows of %d elements overlap",
         static_cast<long long>(io.token_stride), static_cast<long long>(io.head_stride), g.head_dim);
  }
  if (enum_bits(io.memory) != SR_MEMORY_HOST && enum_bits(io.memory) != SR_MEMORY_DEVICE) {
    fail(SR_ERR_INVALID_ARGUMENT, "io.memory = %d is not an sr_memory value", enum_bits(io.memory));
  }
  if (io.memory == SR_MEMORY_DEVICE && cache.context->backend == SR_BACKEND_CPU) {
    fail(SR_ERR_UNSUPPORTED, "io.memory = SR_MEMORY_DEVICE, but this cache lives on the CPU backend");
  }
  return io;
}

}  // namespace
}  // namespace sr

extern "C" {

sr_status sr_kv_cache_create(sr_context* context, const sr_kv_cache_options* options, sr_kv_cache** out_cache) {
  return sr::guard([&] {
    sr::require_not_null(context, "context");
    sr::require_not_null(options, "options");
    sr::require_not_null(out_cache, "out_cache");
    sr_kv_cache_options o = sr::read_struct(options, "sr_kv_cache_options", sr::kv_cache_options_defaults);
    if (o.max_q_heads == 0 && o.num_kv_heads > 0) o.max_q_heads = 8 * o.num_kv_heads;
    sr::validate_cache_options(o);
    auto cache = std::make_unique<sr_kv_cache>();
    cache->options = o;
    cache->geometry = sr_cache_geometry{o.num_layers,
                                        o.num_kv_heads,
                                        o.head_dim,
                                        o.page_tokens,
                                        o.capacity_tokens / o.page_tokens + (o.capacity_tokens % o.page_tokens != 0),
                                        o.dtype,
                                        o.max_batch,
                                        o.max_q_heads};
    const sr_cache_geometry& g = cache->geometry;
    cache->page_refs.assign(static_cast<size_t>(g.num_pages), 0);
    cache->free_pages.resize(static_cast<size_t>(g.num_pages));
    for (int64_t i = 0; i < g.num_pages; ++i) cache->free_pages[i] = static_cast<int32_t>(g.num_pages - 1 - i);
    sr_backend_error err{};
    sr::check_backend(context->iface->storage_create(context->device, &g, &cache->storage, &err), err,
                      "creating the cache storage");
    cache->context = context;
    sr::context_retain(context);
    *out_cache = cache.release();
  });
}

void sr_kv_cache_destroy(sr_kv_cache* cache) {
  if (!cache) return;
  sr_context* context = cache->context;
  context->iface->storage_destroy(cache->storage);
  delete cache;
  sr::context_release(context);
}

sr_status sr_kv_cache_pages(const sr_kv_cache* cache, int64_t* out_total_pages, int64_t* out_free_pages) {
  return sr::guard([&] {
    const sr_kv_cache& c = sr::checked(cache);
    sr::require_not_null(out_total_pages, "out_total_pages");
    sr::require_not_null(out_free_pages, "out_free_pages");
    std::shared_lock<std::shared_mutex> lock(c.mutex);
    *out_total_pages = c.geometry.num_pages;
    *out_free_pages = static_cast<int64_t>(c.free_pages.size());
  });
}

sr_status sr_seq_add(sr_kv_cache* cache, sr_seq_id* out_seq) {
  return sr::guard([&] {
    sr_kv_cache& c = sr::checked(cache);
    sr::require_not_null(out_seq, "out_seq");
    std::unique_lock<std::shared_mutex> lock(c.mutex);
    *out_seq = sr::add_sequence(c);
  });
}

sr_status sr_seq_fork(sr_kv_cache* cache, sr_seq_id parent, sr_seq_id* out_child) {
  return sr::guard([&] {
    sr_kv_cache& c = sr::checked(cache);
    sr::require_not_null(out_child, "out_child");
    std::unique_lock<std::shared_mutex> lock(c.mutex);
    *out_child = sr::fork_sequence(c, parent);
  });
}

sr_status sr_seq_remove(sr_kv_cache* cache, sr_seq_id seq) {
  return sr::guard([&] {
    sr_kv_cache& c = sr::checked(cache);
    std::unique_lock<std::shared_mutex> lock(c.mutex);
    sr::remove_sequence(c, seq);
  });
}

sr_status sr_seq_length(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t* out_length) {
  return sr::guard([&] {
    const sr_kv_cache& c = sr::checked(cache);
    sr::require_not_null(out_length, "out_length");
    std::shared_lock<std::shared_mutex> lock(c.mutex);
    const sr::Sequence& s = sr::find_sequence(c, seq);
    sr::check_layer(c, layer);
    *out_length = s.lengths[layer];
  });
}

sr_status sr_seq_truncate(sr_kv_cache* cache, sr_seq_id seq, int64_t new_length) {
  return sr::guard([&] {
    sr_kv_cache& c = sr::checked(cache);
    std::unique_lock<std::shared_mutex> lock(c.mutex);
    sr::truncate_sequence(c, seq, new_length);
  });
}

sr_status sr_kv_append(sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t n_tokens, const void* k,
                       const void* v, const sr_kv_io* io) {
  return sr::guard([&] {
    sr_kv_cache& c = sr::checked(cache);
    sr::require_not_null(k, "k");
    sr::require_not_null(v, "v");
    if (n_tokens < 1) sr::fail(SR_ERR_INVALID_ARGUMENT, "n_tokens = %lld must be at least 1", static_cast<long long>(n_tokens));
    sr::check_layer(c, layer);
    sr_kv_io resolved = sr::resolve_io(c, io, n_tokens);
    std::unique_lock<std::shared_mutex> lock(c.mutex);
    sr::append_tokens(c, seq, layer, n_tokens, k, v, resolved);
  });
}

sr_status sr_kv_read(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t first_token, int64_t n_tokens,
                     void* k_out, void* v_out, const sr_kv_io* io) {
  return sr::guard([&] {
    const sr_kv_cache& c = sr::checked(cache);
    if (!k_out && !v_out) sr::fail(SR_ERR_INVALID_ARGUMENT, "k_out and v_out are both NULL: nothing to read");
    if (n_tokens < 1) sr::fail(SR_ERR_INVALID_ARGUMENT, "n_tokens = %lld must be at least 1", static_cast<long long>(n_tokens));
    sr::check_layer(c, layer);
    sr_kv_io resolved = sr::resolve_io(c, io, n_tokens);
    std::shared_lock<std::shared_mutex> lock(c.mutex);
    sr::read_tokens(c, seq, layer, first_token, n_tokens, k_out, v_out, resolved);
  });
}

}  // extern "C"
