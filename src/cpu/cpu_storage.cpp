// The CPU cache's page pool: K/V pages in host memory (with per-row scales for FP8) and the
// per-page V-norm and spectral summaries that the certified bound needs, kept current on every
// write, copy and trim.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <sys/mman.h>

#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/fp8_rows.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "cpu/cpu_backend.h"

void sr_backend_storage::FreeDeleter::operator()(void* p) const { std::free(p); }

namespace sr::cpu {

float load_as_float(const void* base, int64_t index, sr_dtype dtype) {
  switch (dtype) {
    case SR_DTYPE_F32: return static_cast<const float*>(base)[index];
    case SR_DTYPE_F16: return f16_to_float(static_cast<const uint16_t*>(base)[index]);
    default: return bf16_to_float(static_cast<const uint16_t*>(base)[index]);
  }
}

void store_from_float(void* base, int64_t index, sr_dtype dtype, float value) {
  switch (dtype) {
    case SR_DTYPE_F32: static_cast<float*>(base)[index] = value; break;
    case SR_DTYPE_F16: static_cast<uint16_t*>(base)[index] = float_to_f16(value); break;
    default: static_cast<uint16_t*>(base)[index] = float_to_bf16(value); break;
  }
}

namespace {

// Large pools are aligned to 2 MiB and marked for transparent huge pages: a decode step jumps
// between pages all over the pool, and 4 KiB pages would cost a TLB miss per block.
void* allocate(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  void* p = nullptr;
  if (bytes == 0) bytes = 64;
  size_t alignment = bytes >= kHuge ? kHuge : 64;
  if (posix_memalign(&p, alignment, (bytes + alignment - 1) / alignment * alignment) != 0) return nullptr;
#if defined(MADV_HUGEPAGE)
  if (alignment == kHuge) madvise(p, (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);  // a hint; may be ignored
#endif
  return p;
}

// One row (head_dim elements) of a cache's K or V as the cache stores it: its bytes and, for
// FP8, its scale.
struct CacheRow {
  unsigned char* bytes;
  float* scale;  // FP8 only
  int32_t head_dim;
  sr_dtype dtype;
};

CacheRow cache_row(const sr_backend_storage* s, bool is_v, int32_t layer, int64_t row) {
  const int32_t D = s->geometry.head_dim;
  unsigned char* layer_bytes = is_v ? s->v_layer(layer) : s->k_layer(layer);
  float* scales = is_v ? s->v_scale_layer(layer) : s->k_scale_layer(layer);
  return CacheRow{layer_bytes + row * D * static_cast<int64_t>(s->element_size), scales ? scales + row : nullptr, D,
                  s->geometry.dtype};
}

// The stored values of a row, dequantized to f32 (what decode computes with).
void load_row(const CacheRow& row, float* out) {
  if (row.dtype == SR_DTYPE_FP8_E4M3) {
    for (int32_t d = 0; d < row.head_dim; ++d) out[d] = fp8_decode(row.bytes[d], *row.scale);
  } else {
    for (int32_t d = 0; d < row.head_dim; ++d) out[d] = load_as_float(row.bytes, d, row.dtype);
  }
}

// Stores f32 values into a row: rounded to the cache's dtype; FP8 computes the row's scale.
void store_row(const CacheRow& row, const float* in) {
  if (row.dtype == SR_DTYPE_FP8_E4M3) {
    float amax = 0.f;
    for (int32_t d = 0; d < row.head_dim; ++d) amax = fp8_amax_step(amax, in[d]);
    const float scale = fp8_row_scale(amax);
    *row.scale = scale;
    for (int32_t d = 0; d < row.head_dim; ++d) row.bytes[d] = fp8_encode(in[d], scale);
  } else {
    for (int32_t d = 0; d < row.head_dim; ++d) store_from_float(row.bytes, d, row.dtype, in[d]);
  }
}

// Norm of one stored V row as its page's summary counts it (summary_row_norm).
float stored_row_norm(const CacheRow& row) {
  float x[256];
  load_row(row, x);
  double sum = 0.0;
  for (int32_t d = 0; d < row.head_dim; ++d) sum += static_cast<double>(x[d]) * x[d];
  return summary_row_norm(sum);
}

// certified_gram_lambda_max for the rows of a page or node, with AVX2 and FMA where the CPU has
// them (flatten inlines the whole computation into the AVX2 copy; measured 1.6x at head_dim 128).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"), flatten)) double gram_lambda_avx2(const float* rows, int64_t n, int32_t d) {
  return certified_gram_lambda_max(rows, n, d, d);
}
#endif

double gram_lambda(const float* rows, int64_t n, int32_t d) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) return gram_lambda_avx2(rows, n, d);
#endif
  return certified_gram_lambda_max(rows, n, d, d);
}

// The spectral summaries of one kv-head of a full page (docs/ARCHITECTURE.md, "Spectral
// summaries"): its sigma, and the lambda of every node it closes, over the stored (dequantized)
// rows of the sequence's pages; with `plain` those of the rows themselves, with a `reference`
// ([head_dim]) those of the rows minus it (reference_compensation.h), and the page's largest
// centred row norm. Without memory for the work the slots stay +inf (no summary), which every
// bound reads as valid.
void summarize_full_page(const sr_backend_storage* s, int32_t layer, const int32_t* pages, int64_t logical_page,
                         int32_t kv_head, bool plain, const float* reference) {
  const sr_cache_geometry& g = s->geometry;
  const int32_t D = g.head_dim, PT = g.page_tokens;
  const int64_t page_head = static_cast<int64_t>(pages[logical_page]) * g.num_kv_heads + kv_head;
  float* slots = s->vspectral_layer(layer) + page_head * kSpectralSlots;
  float* centred = s->vcentred_layer(layer) + page_head * kCentredSlots;
  // The rows of the largest node the page closes, gathered once: each smaller one (the page
  // itself included) is their tail.
  int top = 0;
  while (top < kTreeLevels && page_closes_node(logical_page, top + 1)) ++top;
  const int64_t first_page = logical_page + 1 - (int64_t{1} << (2 * top));
  const int64_t top_rows = (logical_page + 1 - first_page) * PT;
  try {
    std::vector<float> rows(static_cast<size_t>(top_rows * D));
    for (int64_t lp = first_page; lp <= logical_page; ++lp) {
      for (int32_t t = 0; t < PT; ++t) {
        const int64_t row = (static_cast<int64_t>(pages[lp]) * g.num_kv_heads + kv_head) * PT + t;
        load_row(cache_row(s, true, layer, row), rows.data() + ((lp - first_page) * PT + t) * D);
      }
    }
    for (int level = 0; plain && level <= top; ++level) {
      const int64_t n_rows = (int64_t{1} << (2 * level)) * PT;
      const double lambda = gram_lambda(rows.data() + (top_rows - n_rows) * D, n_rows, D);
      slots[level] = level == 0 ? f32_at_least(sqrt(lambda)) : f32_at_least(lambda);
    }
    if (!reference) return;
    // The page's largest centred norm from the exact differences (double), then the rows
    // centred in f32 in place (kCentringSlack covers that rounding).
    float largest = 0.f;
    for (int64_t r = top_rows - PT; r < top_rows; ++r) {
      double sum = 0.0;
      for (int32_t d = 0; d < D; ++d) {
        const double x = static_cast<double>(rows[r * D + d]) - reference[d];
        sum += x * x;
      }
      largest = std::fmax(largest, summary_row_norm(sum));
    }
    for (int64_t r = 0; r < top_rows; ++r) {
      for (int32_t d = 0; d < D; ++d) rows[r * D + d] -= reference[d];
    }
    for (int level = 0; level <= top; ++level) {
      const int64_t n_rows = (int64_t{1} << (2 * level)) * PT;
      const double lambda = gram_lambda(rows.data() + (top_rows - n_rows) * D, n_rows, D);
      centred[level] = level == 0 ? f32_at_least(sqrt(lambda) * kCentringSlack)
                                  : f32_at_least(lambda * kCentringSlack * kCentringSlack);
    }
    centred[kCentredNormSlot] = largest;
  } catch (const std::bad_alloc&) {
  }
}

// Freezes the layer's reference (reference_compensation.h): per kv-head the mean of the finite
// V rows of the sequence's first kReferencePages pages (all full), 0 where none is finite.
void freeze_reference(sr_backend_storage* s, int32_t layer, const int32_t* pages) {
  const sr_cache_geometry& g = s->geometry;
  const int32_t D = g.head_dim, PT = g.page_tokens;
  float* reference = s->vreference.get() + static_cast<int64_t>(layer) * g.num_kv_heads * D;
  float row[256];
  for (int32_t h = 0; h < g.num_kv_heads; ++h) {
    double sum[256] = {};
    int64_t finite = 0;
    for (int64_t lp = 0; lp < kReferencePages; ++lp) {
      for (int32_t t = 0; t < PT; ++t) {
        load_row(cache_row(s, true, layer, (static_cast<int64_t>(pages[lp]) * g.num_kv_heads + h) * PT + t), row);
        bool ok = true;
        for (int32_t d = 0; d < D; ++d) ok = ok && std::isfinite(row[d]);
        if (!ok) continue;
        for (int32_t d = 0; d < D; ++d) sum[d] += row[d];
        ++finite;
      }
    }
    for (int32_t d = 0; d < D; ++d) reference[h * D + d] = finite ? static_cast<float>(sum[d] / finite) : 0.f;
  }
  s->reference_frozen.get()[layer] = 1;
}

bool check_host(const sr_kv_io* io, sr_backend_error* err) {
  if (io->memory != SR_MEMORY_HOST) {
    set_backend_error(err, "io.memory = SR_MEMORY_DEVICE, but the CPU backend only reads host memory");
    return false;
  }
  return true;
}

}  // namespace

sr_status storage_create(sr_backend_device* device, const sr_cache_geometry* g, sr_backend_storage** out,
                         sr_backend_error* err) {
  auto storage = new (std::nothrow) sr_backend_storage;
  if (!storage) return SR_ERR_OUT_OF_MEMORY;
  storage->device = device;
  storage->geometry = *g;
  storage->element_size = sr_dtype_size(g->dtype);
  storage->page_elements = static_cast<int64_t>(g->num_kv_heads) * g->page_tokens * g->head_dim;
  storage->layer_elements = g->num_pages * storage->page_elements;
  size_t kv_bytes = static_cast<size_t>(g->num_layers) * storage->layer_elements * storage->element_size;
  size_t norm_bytes = sizeof(float) * g->num_layers * g->num_pages * g->num_kv_heads;
  size_t spectral_bytes = norm_bytes * kSpectralSlots;
  size_t centred_bytes = norm_bytes * kCentredSlots;
  size_t reference_bytes = sizeof(float) * g->num_layers * g->num_kv_heads * g->head_dim;
  storage->k.reset(static_cast<unsigned char*>(allocate(kv_bytes)));
  storage->v.reset(static_cast<unsigned char*>(allocate(kv_bytes)));
  storage->vnorm.reset(static_cast<float*>(allocate(norm_bytes)));
  storage->vspectral.reset(static_cast<float*>(allocate(spectral_bytes)));
  storage->vcentred.reset(static_cast<float*>(allocate(centred_bytes)));
  storage->vreference.reset(static_cast<float*>(allocate(reference_bytes)));
  storage->reference_frozen.reset(static_cast<unsigned char*>(allocate(g->num_layers)));
  const bool fp8 = g->dtype == SR_DTYPE_FP8_E4M3;
  const size_t scale_bytes = fp8 ? sizeof(float) * g->num_layers * storage->layer_rows() : 0;
  if (fp8) {
    storage->k_scale.reset(static_cast<float*>(allocate(scale_bytes)));
    storage->v_scale.reset(static_cast<float*>(allocate(scale_bytes)));
  }
  if (!storage->k || !storage->v || !storage->vnorm || !storage->vspectral || !storage->vcentred ||
      !storage->vreference || !storage->reference_frozen || (fp8 && (!storage->k_scale || !storage->v_scale))) {
    set_backend_error(err, "could not allocate %zu bytes of host memory for the KV pages",
              2 * kv_bytes + norm_bytes + spectral_bytes + centred_bytes + reference_bytes + 2 * scale_bytes);
    delete storage;
    return SR_ERR_OUT_OF_MEMORY;
  }
  std::fill_n(storage->vspectral.get(), spectral_bytes / sizeof(float), INFINITY);
  std::fill_n(storage->vcentred.get(), centred_bytes / sizeof(float), INFINITY);
  std::fill_n(storage->reference_frozen.get(), g->num_layers, static_cast<unsigned char>(0));
  *out = storage;
  return SR_OK;
}

void storage_destroy(sr_backend_storage* storage) { delete storage; }

sr_status write_tokens(sr_backend_storage* s, int32_t layer, const int32_t* pages, int64_t first_token,
                       int64_t n_tokens, const void* k, const void* v, const sr_kv_io* io,
                       sr_backend_error* err) {
  if (!check_host(io, err)) return SR_ERR_UNSUPPORTED;
  const sr_cache_geometry& g = s->geometry;
  float* norms = s->vnorm_layer(layer);
  float* spectral = s->vspectral_layer(layer);
  float* centred = s->vcentred_layer(layer);
  const size_t row_bytes = g.head_dim * s->element_size;
  const void* sources[2] = {k, v};
  float values[256];
  for (int64_t i = 0; i < n_tokens; ++i) {
    int64_t t = first_token + i;
    int64_t page = pages[t / g.page_tokens];
    int64_t slot = t % g.page_tokens;
    for (int32_t h = 0; h < g.num_kv_heads; ++h) {
      int64_t src = i * io->token_stride + h * io->head_stride;
      int64_t row = (page * g.num_kv_heads + h) * g.page_tokens + slot;
      for (int which = 0; which < 2; ++which) {
        CacheRow dst = cache_row(s, which == 1, layer, row);
        if (io->dtype == g.dtype) {
          std::memcpy(dst.bytes, static_cast<const unsigned char*>(sources[which]) + src * s->element_size, row_bytes);
        } else {
          for (int32_t d = 0; d < g.head_dim; ++d) values[d] = load_as_float(sources[which], src + d, io->dtype);
          store_row(dst, values);
        }
      }
      float norm = stored_row_norm(cache_row(s, true, layer, row));
      float& summary = norms[page * g.num_kv_heads + h];
      // Slot 0 opens a page: whatever summary a previous owner left is stale.
      summary = slot == 0 ? norm : std::fmax(summary, norm);
      // Any new row makes the spectral summaries stale until the page is full again.
      std::fill_n(spectral + (page * g.num_kv_heads + h) * kSpectralSlots, kSpectralSlots, INFINITY);
      std::fill_n(centred + (page * g.num_kv_heads + h) * kCentredSlots, kCentredSlots, INFINITY);
    }
  }
  // The pages this write filled, every kv-head in parallel on the context's threads. A write
  // that fills a sequence's page kReferencePages - 1 first freezes the reference, and the
  // pages it did not fill itself before that one get their centred summaries too.
  const int64_t first_full = first_token / g.page_tokens, end_full = (first_token + n_tokens) / g.page_tokens;
  int64_t centred_from = first_full;
  const bool compensates = s->device->compensate;  // (else no decode reads the centred summaries)
  if (compensates && !s->reference_frozen.get()[layer] && first_full < kReferencePages && end_full >= kReferencePages) {
    freeze_reference(s, layer, pages);
    centred_from = 0;
  }
  const float* reference = s->reference_layer(layer);
  const int64_t tasks = (end_full - (reference ? centred_from : first_full)) * g.num_kv_heads;
  if (tasks > 0) {
    const int64_t from = reference ? centred_from : first_full;
    s->device->pool->parallel_for(tasks, [&](int64_t i) {
      const int64_t page = from + i / g.num_kv_heads;
      const int32_t kv_head = static_cast<int32_t>(i % g.num_kv_heads);
      summarize_full_page(s, layer, pages, page, kv_head, page >= first_full,
                          reference ? reference + static_cast<int64_t>(kv_head) * g.head_dim : nullptr);
    });
  }
  return SR_OK;
}

sr_status read_tokens(const sr_backend_storage* s, int32_t layer, const int32_t* pages,
                      int64_t first_token, int64_t n_tokens, void* k_out, void* v_out,
                      const sr_kv_io* io, sr_backend_error* err) {
  if (!check_host(io, err)) return SR_ERR_UNSUPPORTED;
  const sr_cache_geometry& g = s->geometry;
  void* outs[2] = {k_out, v_out};
  const int64_t first_page = first_token / g.page_tokens;
  const size_t row_bytes = g.head_dim * s->element_size;
  float values[256];
  for (int which = 0; which < 2; ++which) {
    if (!outs[which]) continue;
    for (int64_t i = 0; i < n_tokens; ++i) {
      int64_t t = first_token + i;
      int64_t page = pages[t / g.page_tokens - first_page];
      for (int32_t h = 0; h < g.num_kv_heads; ++h) {
        CacheRow src = cache_row(s, which == 1, layer, (page * g.num_kv_heads + h) * g.page_tokens + t % g.page_tokens);
        int64_t dst = i * io->token_stride + h * io->head_stride;
        if (io->dtype == g.dtype) {
          std::memcpy(static_cast<unsigned char*>(outs[which]) + dst * s->element_size, src.bytes, row_bytes);
        } else {
          load_row(src, values);
          for (int32_t d = 0; d < g.head_dim; ++d) store_from_float(outs[which], dst + d, io->dtype, values[d]);
        }
      }
    }
  }
  return SR_OK;
}

sr_status copy_page(sr_backend_storage* s, int32_t src_page, int32_t dst_page, sr_backend_error*) {
  const sr_cache_geometry& g = s->geometry;
  size_t page_bytes = s->page_elements * s->element_size;
  for (int32_t layer = 0; layer < g.num_layers; ++layer) {
    std::memcpy(s->k_layer(layer) + dst_page * page_bytes, s->k_layer(layer) + src_page * page_bytes, page_bytes);
    std::memcpy(s->v_layer(layer) + dst_page * page_bytes, s->v_layer(layer) + src_page * page_bytes, page_bytes);
    if (s->k_scale) {
      const int64_t page_rows = static_cast<int64_t>(g.num_kv_heads) * g.page_tokens;
      for (float* scales : {s->k_scale_layer(layer), s->v_scale_layer(layer)}) {
        std::memcpy(scales + dst_page * page_rows, scales + src_page * page_rows, sizeof(float) * page_rows);
      }
    }
    float* norms = s->vnorm_layer(layer);
    std::memcpy(norms + static_cast<int64_t>(dst_page) * g.num_kv_heads,
                norms + static_cast<int64_t>(src_page) * g.num_kv_heads, sizeof(float) * g.num_kv_heads);
    float* spectral = s->vspectral_layer(layer);
    const int64_t page_slots = static_cast<int64_t>(g.num_kv_heads) * kSpectralSlots;
    std::memcpy(spectral + dst_page * page_slots, spectral + src_page * page_slots, sizeof(float) * page_slots);
    float* centred = s->vcentred_layer(layer);
    const int64_t page_centred = static_cast<int64_t>(g.num_kv_heads) * kCentredSlots;
    std::memcpy(centred + dst_page * page_centred, centred + src_page * page_centred, sizeof(float) * page_centred);
  }
  return SR_OK;
}

// The spectral summaries stay: values of the longer content still bound every subset of its rows,
// and the next write into the page resets them.
sr_status trim_page(sr_backend_storage* s, int32_t layer, int32_t page, int32_t valid_tokens,
                    sr_backend_error*) {
  const sr_cache_geometry& g = s->geometry;
  float* norms = s->vnorm_layer(layer);
  for (int32_t h = 0; h < g.num_kv_heads; ++h) {
    float norm = 0.f;
    for (int32_t t = 0; t < valid_tokens; ++t) {
      int64_t row = (static_cast<int64_t>(page) * g.num_kv_heads + h) * g.page_tokens + t;
      norm = std::fmax(norm, stored_row_norm(cache_row(s, true, layer, row)));
    }
    norms[static_cast<int64_t>(page) * g.num_kv_heads + h] = norm;
  }
  return SR_OK;
}

}  // namespace sr::cpu
