// The device-resident page pool: K/V pages (with per-row scales for FP8), V-norm summaries, page tables mirrored from the
// core, and the decode workspace. Writes are asynchronous on the append's stream (the
// context's when it names none); reads are synchronous.
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "gpu_backend.h"
#include "kernels/spectral_kernels.cuh"
#include "kernels/storage_kernels.cuh"

namespace sr::gpu {
namespace {

template <class T>
sr_status device_alloc(T** out, size_t count, const char* what, sr_backend_error* err) {
  *out = nullptr;
  size_t bytes = std::max<size_t>(count * sizeof(T), 16);
  sr_status s = check(gpuMalloc(reinterpret_cast<void**>(out), bytes), what, err);
  if (s == SR_OK) s = check(gpuMemset(*out, 0, bytes), what, err);
  return s;
}

void free_all(sr_backend_storage* s) {
  (void)gpuFree(s->k);
  (void)gpuFree(s->v);
  (void)gpuFree(s->vnorm);
  (void)gpuFree(s->vspectral);
  (void)gpuFree(s->vcentred);
  (void)gpuFree(s->vreference);
  (void)gpuFree(s->k_scale);
  (void)gpuFree(s->v_scale);
  (void)gpuFree(s->tables_device);
  (void)gpuFree(s->tables.pages);
  (void)gpuFree(s->tables.lengths);
  (void)gpuFree(s->tables.split_weights);
  (void)gpuFree(s->part_o);
  (void)gpuFree(s->part_state);
  (void)gpuFree(s->group_tally);
  (void)gpuFree(s->group_skipped);
  (void)gpuFree(s->next_weight);
  (void)gpuFree(s->groups_merged);
  (void)gpuFree(s->arrivals);
  (void)gpuFree(s->redo);
}

gpuStream_t stream_of(const sr_backend_storage* s, const sr_kv_io* io) {
  return io && io->stream ? static_cast<gpuStream_t>(io->stream) : s->device->stream;
}

// What a token copy kernel needs to find tokens [first_token, first_token + n_tokens) of one
// layer in the pool; the caller adds its buffers (and vnorm, when values are written).
TokenCopy token_copy(const sr_backend_storage* s, int32_t layer, int64_t first_token, int64_t n_tokens,
                     const sr_kv_io* io) {
  const sr_cache_geometry& g = s->geometry;
  TokenCopy c{};
  c.k = s->k_layer(layer);
  c.v = s->v_layer(layer);
  c.k_scale = s->k_scale_layer(layer);
  c.v_scale = s->v_scale_layer(layer);
  c.src_dtype = io->dtype;
  c.cache_dtype = g.dtype;
  c.kv_heads = g.num_kv_heads;
  c.head_dim = g.head_dim;
  c.page_tokens = g.page_tokens;
  c.first_token = first_token;
  c.n_tokens = n_tokens;
  return c;
}

// Makes the table arrays hold `slots` slots of `stride` pages; existing rows are kept. Waits
// for the device, since launches in flight may read the arrays being replaced (rare: growth
// at least doubles).
sr_status grow_tables(sr_backend_storage* s, int64_t slots, int64_t stride, sr_backend_error* err) {
  const int32_t layers = s->geometry.num_layers;
  slots = std::max(slots, s->slot_capacity);
  stride = std::max(stride, s->tables.page_stride);
  if (slots == s->slot_capacity && stride == s->tables.page_stride) return SR_OK;
  sr_status st = check(gpuDeviceSynchronize(), "waiting before growing the page tables", err);
  const int64_t weights_per_slot = static_cast<int64_t>(layers) * s->geometry.num_kv_heads;
  DeviceTables grown{nullptr, nullptr, nullptr, stride, layers};
  if (st == SR_OK) st = device_alloc(&grown.pages, static_cast<size_t>(slots * stride), "allocating page tables", err);
  if (st == SR_OK) st = device_alloc(&grown.lengths, static_cast<size_t>(slots * layers), "allocating lengths", err);
  if (st == SR_OK) {
    st = device_alloc(&grown.split_weights, static_cast<size_t>(slots * weights_per_slot), "allocating split weights", err);
  }
  if (st == SR_OK && s->slot_capacity > 0) {
    st = check(gpuMemcpy2D(grown.pages, stride * sizeof(int32_t), s->tables.pages,
                            s->tables.page_stride * sizeof(int32_t), s->tables.page_stride * sizeof(int32_t),
                            static_cast<size_t>(s->slot_capacity), gpuMemcpyDeviceToDevice),
               "copying page tables", err);
    if (st == SR_OK) {
      st = check(gpuMemcpy(grown.lengths, s->tables.lengths, sizeof(int64_t) * s->slot_capacity * layers,
                           gpuMemcpyDeviceToDevice),
                 "copying lengths", err);
    }
    if (st == SR_OK) {
      st = check(gpuMemcpy(grown.split_weights, s->tables.split_weights,
                           sizeof(uint16_t) * s->slot_capacity * weights_per_slot, gpuMemcpyDeviceToDevice),
                 "copying split weights", err);
    }
  }
  if (st == SR_OK) {
    st = check(gpuMemcpy(s->tables_device, &grown, sizeof grown, gpuMemcpyHostToDevice), "publishing page tables", err);
  }
  if (st != SR_OK) {
    (void)gpuFree(grown.pages);
    (void)gpuFree(grown.lengths);
    (void)gpuFree(grown.split_weights);
    return st;
  }
  (void)gpuFree(s->tables.pages);
  (void)gpuFree(s->tables.lengths);
  (void)gpuFree(s->tables.split_weights);
  s->tables = grown;
  s->slot_capacity = slots;
  s->sent_pages.resize(static_cast<size_t>(slots));
  s->sent_lengths.resize(static_cast<size_t>(slots), std::vector<int64_t>(layers, 0));
  return SR_OK;
}

// Stream-ordered copy of host words to device memory, in launches of kScatterWords.
sr_status scatter_words(uint32_t* dst, const uint32_t* words, int64_t count, gpuStream_t stream,
                        sr_backend_error* err) {
  for (int64_t done = 0; done < count; done += kScatterWords) {
    WordScatter w;
    w.dst = dst + done;
    w.count = static_cast<int32_t>(std::min<int64_t>(kScatterWords, count - done));
    std::memcpy(w.words, words + done, sizeof(uint32_t) * w.count);
    scatter_words_kernel<<<1, 256, 0, stream>>>(w);
    sr_status s = check(gpuGetLastError(), "updating the device page table", err);
    if (s != SR_OK) return s;
  }
  return SR_OK;
}

// The spectral summaries of logical pages [filled_begin, filled_end), now full, and of every node
// they close (spectral_kernels.cuh), on the append's stream; then, where the device compensates
// (Tuning) and the layer's reference is frozen, those of the same rows minus it. The write that fills a sequence's page
// kReferencePages - 1 first freezes the reference, and its earlier pages get their centred
// summaries then (reference_compensation.h, as the host's storage). Where device memory for
// them is short they stay "none known" (+inf): the append itself does not fail.
sr_status summarize_filled(sr_backend_storage* s, int32_t layer, const int32_t* table, int64_t filled_begin,
                           int64_t filled_end, gpuStream_t stream, sr_backend_error* err) {
  const sr_cache_geometry& g = s->geometry;
  constexpr int64_t kTopPages = int64_t{1} << (2 * kTreeLevels);
  const int64_t table_first = filled_begin / kTopPages * kTopPages;  // where the first closed node may start
  const int64_t table_pages = filled_end - table_first;
  int32_t* device_table = nullptr;
  if (gpuMallocAsync(reinterpret_cast<void**>(&device_table), sizeof(int32_t) * table_pages, stream) != gpuSuccess) {
    (void)gpuGetLastError();
    return SR_OK;
  }
  // (From pageable memory the copy is staged before the call returns: the table may change after.)
  sr_status st = check(gpuMemcpyAsync(device_table, table + table_first, sizeof(int32_t) * table_pages,
                                      gpuMemcpyHostToDevice, stream),
                       "copying the page table for the spectral summaries", err);
  if (st == SR_OK) {
    SpectralJob job{};
    job.v = s->v_layer(layer);
    job.v_scale = s->v_scale_layer(layer);
    job.slots = s->vspectral_layer(layer);
    job.slot_count = kSpectralSlots;
    job.pages = device_table;
    job.dtype = g.dtype;
    job.kv_heads = g.num_kv_heads;
    job.head_dim = g.head_dim;
    job.page_tokens = g.page_tokens;
    job.table_first = table_first;
    st = check(launch_spectral_summaries(job, filled_begin, filled_end, stream), "launching the spectral summaries", err);
    int64_t centred_from = filled_begin;
    const bool compensates = s->device->tuning.compensate;
    if (st == SR_OK && compensates && !s->reference_frozen[layer] && filled_begin < kReferencePages &&
        filled_end >= kReferencePages) {
      // (table_first is 0 here: filled_begin lies in the first top-level node.)
      reference_kernel<<<g.num_kv_heads, kSpectralThreads, 0, stream>>>(job, s->vreference_layer(layer));
      st = check(gpuGetLastError(), "launching the reference of the layer", err);
      if (st == SR_OK) s->reference_frozen[layer] = 1;
      centred_from = 0;
    }
    if (st == SR_OK && s->reference_frozen[layer]) {
      job.slots = s->vcentred_layer(layer);
      job.slot_count = kCentredSlots;
      job.centre = s->vreference_layer(layer);
      st = check(launch_spectral_summaries(job, centred_from, filled_end, stream), "launching the centred summaries", err);
    }
  }
  (void)gpuFreeAsync(device_table, stream);
  return st;
}

}  // namespace

sr_status storage_create(sr_backend_device* device, const sr_cache_geometry* g, sr_backend_storage** out,
                         sr_backend_error* err) {
  DeviceScope scope(device);
  auto s = new (std::nothrow) sr_backend_storage;
  if (!s) return SR_ERR_OUT_OF_MEMORY;
  s->device = device;
  s->geometry = *g;
  s->update_stream = device->stream;
  s->element_size = dtype_element_bytes(g->dtype);
  s->page_elements = static_cast<int64_t>(g->num_kv_heads) * g->page_tokens * g->head_dim;
  s->layer_elements = g->num_pages * s->page_elements;
  const size_t kv_elements = static_cast<size_t>(g->num_layers) * s->layer_elements;

  // Workspace: one launch covers up to kLaunchBatch batch entries; each (entry, kv-head, tile)
  // group owns an arrival counter and a redo flag, each (group, split) a partial state.
  const int32_t max_group = std::max(1, g->max_q_heads / g->num_kv_heads);
  const int32_t max_tiles = (max_group + kMaxTileHeads - 1) / kMaxTileHeads;
  s->group_capacity = static_cast<int64_t>(std::min(g->max_batch, kLaunchBatch)) * g->num_kv_heads * max_tiles;
  s->split_capacity = std::max<int64_t>(2 * s->group_capacity, 16 * static_cast<int64_t>(device->sm_count));
  const size_t partial_rows = static_cast<size_t>(s->split_capacity) * kMaxTileHeads;

  sr_status st = check(gpuMalloc(&s->k, std::max<size_t>(kv_elements * s->element_size, 16)), "allocating K pages", err);
  if (st == SR_OK) st = check(gpuMalloc(&s->v, std::max<size_t>(kv_elements * s->element_size, 16)), "allocating V pages", err);
  if (st == SR_OK) {
    st = device_alloc(&s->vnorm, static_cast<size_t>(g->num_layers) * g->num_pages * g->num_kv_heads,
                      "allocating V-norm summaries", err);
  }
  if (st == SR_OK) {
    const int64_t floats = static_cast<int64_t>(g->num_layers) * s->spectral_floats_per_layer();
    st = device_alloc(&s->vspectral, static_cast<size_t>(floats), "allocating spectral summaries", err);
    if (st == SR_OK) {
      fill_floats_kernel<<<256, 256, 0, device->stream>>>(s->vspectral, floats, INFINITY);
      st = check(gpuGetLastError(), "initialising spectral summaries", err);
    }
    const int64_t centred = static_cast<int64_t>(g->num_layers) * s->centred_floats_per_layer();
    if (st == SR_OK) st = device_alloc(&s->vcentred, static_cast<size_t>(centred), "allocating centred summaries", err);
    if (st == SR_OK) {
      fill_floats_kernel<<<256, 256, 0, device->stream>>>(s->vcentred, centred, INFINITY);
      st = check(gpuGetLastError(), "initialising centred summaries", err);
    }
    if (st == SR_OK) {
      st = device_alloc(&s->vreference, static_cast<size_t>(g->num_layers) * g->num_kv_heads * g->head_dim,
                        "allocating the layers' references", err);
    }
    if (st == SR_OK) {
      try {
        s->reference_frozen.assign(static_cast<size_t>(g->num_layers), 0);
      } catch (const std::bad_alloc&) {
        st = SR_ERR_OUT_OF_MEMORY;
      }
    }
    // Appends may run on other streams.
    if (st == SR_OK) st = check(gpuStreamSynchronize(device->stream), "initialising spectral summaries", err);
  }
  if (st == SR_OK && g->dtype == SR_DTYPE_FP8_E4M3) {
    const size_t rows = static_cast<size_t>(g->num_layers) * s->layer_rows();
    st = device_alloc(&s->k_scale, rows, "allocating FP8 row scales", err);
    if (st == SR_OK) st = device_alloc(&s->v_scale, rows, "allocating FP8 row scales", err);
  }
  if (st == SR_OK) st = device_alloc(&s->tables_device, 1, "allocating the page-table directory", err);
  if (st == SR_OK) st = device_alloc(&s->part_o, partial_rows * g->head_dim, "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->part_state, partial_rows, "allocating decode workspace", err);
  const size_t groups = static_cast<size_t>(s->group_capacity);
  if (st == SR_OK) st = device_alloc(&s->group_tally, groups, "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->group_skipped, groups, "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->next_weight, groups, "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->groups_merged, 1, "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->arrivals, static_cast<size_t>(s->group_capacity), "allocating decode workspace", err);
  if (st == SR_OK) st = device_alloc(&s->redo, static_cast<size_t>(s->group_capacity), "allocating decode workspace", err);
  if (st == SR_OK) {
    try {
      st = grow_tables(s, std::max(16, std::min(g->max_batch, 1024)), std::min<int64_t>(g->num_pages, 256), err);
    } catch (const std::bad_alloc&) {
      st = SR_ERR_OUT_OF_MEMORY;
    }
  }
  if (st != SR_OK) {
    if (st == SR_ERR_OUT_OF_MEMORY && err && err->message[0] == 0) set_backend_error(err, "out of host memory");
    free_all(s);
    delete s;
    return st;
  }
  *out = s;
  return SR_OK;
}

void storage_destroy(sr_backend_storage* s) {
  if (!s) return;
  DeviceScope scope(s->device);
  (void)gpuDeviceSynchronize();  // launches in flight may still read the pool
  free_all(s);
  delete s;
}

sr_status write_tokens(sr_backend_storage* s, int32_t layer, const int32_t* pages, int64_t first_token,
                       int64_t n_tokens, const void* k, const void* v, const sr_kv_io* io, sr_backend_error* err) {
  DeviceScope scope(s->device);
  const sr_cache_geometry& g = s->geometry;
  gpuStream_t stream = stream_of(s, io);
  const size_t src_elem = dtype_element_bytes(io->dtype);
  const int32_t* table = pages;          // the sequence's table, from logical page 0
  pages += first_token / g.page_tokens;  // the written pages
  TokenCopy c = token_copy(s, layer, first_token, n_tokens, io);
  c.vnorm = s->vnorm_layer(layer);
  c.vspectral = s->vspectral_layer(layer);
  c.vcentred = s->device->tuning.compensate ? s->vcentred_layer(layer) : nullptr;  // (unread otherwise)

  void* staging = nullptr;
  sr_status st = SR_OK;
  if (io->memory == SR_MEMORY_DEVICE) {
    c.src_k = k;
    c.src_v = v;
    c.token_stride = io->token_stride;
    c.head_stride = io->head_stride;
  } else {
    // Host rows travel packed [n][kv_heads][head_dim] through stream-ordered scratch.
    const int64_t row = g.head_dim;
    const int64_t packed_elements = n_tokens * g.num_kv_heads * row;
    const size_t bytes = static_cast<size_t>(packed_elements) * src_elem;
    st = check(gpuMallocAsync(&staging, 2 * bytes, stream), "allocating append staging memory", err);
    if (st != SR_OK) return st;
    const bool contiguous = io->head_stride == row && io->token_stride == g.num_kv_heads * row;
    std::vector<unsigned char> packed;
    const void* sources[2] = {k, v};
    for (int which = 0; which < 2 && st == SR_OK; ++which) {
      const void* src = sources[which];
      if (!contiguous) {
        packed.resize(bytes);
        for (int64_t t = 0; t < n_tokens; ++t) {
          for (int32_t h = 0; h < g.num_kv_heads; ++h) {
            std::memcpy(packed.data() + ((t * g.num_kv_heads + h) * row) * src_elem,
                        static_cast<const unsigned char*>(src) + (t * io->token_stride + h * io->head_stride) * src_elem,
                        row * src_elem);
          }
        }
        src = packed.data();
      }
      st = check(gpuMemcpyAsync(static_cast<char*>(staging) + which * bytes, src, bytes, gpuMemcpyHostToDevice, stream),
                 "copying appended tokens to the device", err);
    }
    c.src_k = staging;
    c.src_v = static_cast<char*>(staging) + bytes;
    c.token_stride = g.num_kv_heads * row;
    c.head_stride = row;
  }
  const int64_t first_page = first_token / g.page_tokens;
  const int64_t n_pages = (first_token + n_tokens - 1) / g.page_tokens - first_page + 1;
  for (int64_t done = 0; done < n_pages && st == SR_OK; done += kLaunchPages) {
    int32_t count = static_cast<int32_t>(std::min<int64_t>(kLaunchPages, n_pages - done));
    c.first_logical_page = first_page + done;
    std::memcpy(c.pages, pages + done, sizeof(int32_t) * count);
    write_tokens_kernel<<<dim3(count, g.num_kv_heads), kStorageThreads, 0, stream>>>(c);
    st = check(gpuGetLastError(), "launching the append kernel", err);
  }
  // The pages this write fills: their spectral summaries and those of the nodes they close.
  const int64_t filled_end = (first_token + n_tokens) / g.page_tokens;
  if (st == SR_OK && filled_end > first_page) st = summarize_filled(s, layer, table, first_page, filled_end, stream, err);
  if (staging) (void)gpuFreeAsync(staging, stream);
  s->update_stream = stream;  // the page-table update that follows must come after these writes
  return st;
}

sr_status read_tokens(const sr_backend_storage* s, int32_t layer, const int32_t* pages, int64_t first_token,
                      int64_t n_tokens, void* k_out, void* v_out, const sr_kv_io* io, sr_backend_error* err) {
  DeviceScope scope(s->device);
  const sr_cache_geometry& g = s->geometry;
  gpuStream_t stream = stream_of(s, io);
  const size_t out_elem = dtype_element_bytes(io->dtype);
  TokenCopy c = token_copy(s, layer, first_token, n_tokens, io);
  const bool to_host = io->memory != SR_MEMORY_DEVICE;
  const int64_t packed_elements = n_tokens * g.num_kv_heads * g.head_dim;
  const size_t bytes = static_cast<size_t>(packed_elements) * out_elem;
  void* staging = nullptr;
  void* outs[2] = {k_out, v_out};
  if (to_host) {
    sr_status st = check(gpuMalloc(&staging, 2 * bytes), "allocating read staging memory", err);
    if (st != SR_OK) return st;
    c.token_stride = g.num_kv_heads * g.head_dim;
    c.head_stride = g.head_dim;
  } else {
    c.token_stride = io->token_stride;
    c.head_stride = io->head_stride;
  }
  void* dst_k = to_host ? (k_out ? staging : nullptr) : k_out;
  void* dst_v = to_host ? (v_out ? static_cast<char*>(staging) + bytes : nullptr) : v_out;
  const int64_t first_page = first_token / g.page_tokens;
  const int64_t n_pages = (first_token + n_tokens - 1) / g.page_tokens - first_page + 1;
  sr_status st = SR_OK;
  for (int64_t done = 0; done < n_pages && st == SR_OK; done += kLaunchPages) {
    int32_t count = static_cast<int32_t>(std::min<int64_t>(kLaunchPages, n_pages - done));
    c.first_logical_page = first_page + done;
    std::memcpy(c.pages, pages + done, sizeof(int32_t) * count);
    read_tokens_kernel<<<dim3(count, g.num_kv_heads), kStorageThreads, 0, stream>>>(c, dst_k, dst_v);
    st = check(gpuGetLastError(), "launching the read kernel", err);
  }
  if (st == SR_OK) st = check(gpuStreamSynchronize(stream), "reading tokens", err);
  if (st == SR_OK && to_host) {
    std::vector<unsigned char> packed(bytes);
    for (int which = 0; which < 2 && st == SR_OK; ++which) {
      if (!outs[which]) continue;
      st = check(gpuMemcpy(packed.data(), static_cast<char*>(staging) + which * bytes, bytes, gpuMemcpyDeviceToHost),
                 "copying tokens to the host", err);
      if (st != SR_OK) break;
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int32_t h = 0; h < g.num_kv_heads; ++h) {
          std::memcpy(static_cast<unsigned char*>(outs[which]) + (t * io->token_stride + h * io->head_stride) * out_elem,
                      packed.data() + ((t * g.num_kv_heads + h) * g.head_dim) * out_elem, g.head_dim * out_elem);
        }
      }
    }
  }
  (void)gpuFree(staging);
  return st;
}

sr_status copy_page(sr_backend_storage* s, int32_t src_page, int32_t dst_page, sr_backend_error* err) {
  DeviceScope scope(s->device);
  const sr_cache_geometry& g = s->geometry;
  gpuStream_t stream = s->device->stream;
  const size_t page_bytes = s->page_elements * s->element_size;
  sr_status st = SR_OK;
  for (int32_t layer = 0; layer < g.num_layers && st == SR_OK; ++layer) {
    st = check(gpuMemcpyAsync(s->k_layer(layer) + dst_page * page_bytes, s->k_layer(layer) + src_page * page_bytes,
                              page_bytes, gpuMemcpyDeviceToDevice, stream),
               "copying a shared page", err);
    if (st == SR_OK) {
      st = check(gpuMemcpyAsync(s->v_layer(layer) + dst_page * page_bytes, s->v_layer(layer) + src_page * page_bytes,
                                page_bytes, gpuMemcpyDeviceToDevice, stream),
                 "copying a shared page", err);
    }
    if (st == SR_OK && s->k_scale) {
      const int64_t page_rows = static_cast<int64_t>(g.num_kv_heads) * g.page_tokens;
      for (float* scales : {s->k_scale_layer(layer), s->v_scale_layer(layer)}) {
        if (st != SR_OK) break;
        st = check(gpuMemcpyAsync(scales + dst_page * page_rows, scales + src_page * page_rows, sizeof(float) * page_rows,
                                  gpuMemcpyDeviceToDevice, stream),
                   "copying a shared page", err);
      }
    }
    if (st == SR_OK) {
      const int64_t slots = static_cast<int64_t>(g.num_kv_heads) * kSpectralSlots;
      float* spectral = s->vspectral_layer(layer);
      st = check(gpuMemcpyAsync(spectral + dst_page * slots, spectral + src_page * slots, sizeof(float) * slots,
                                gpuMemcpyDeviceToDevice, stream),
                 "copying a shared page", err);
    }
    if (st == SR_OK && s->device->tuning.compensate) {
      const int64_t slots = static_cast<int64_t>(g.num_kv_heads) * kCentredSlots;
      float* centred = s->vcentred_layer(layer);
      st = check(gpuMemcpyAsync(centred + dst_page * slots, centred + src_page * slots, sizeof(float) * slots,
                                gpuMemcpyDeviceToDevice, stream),
                 "copying a shared page", err);
    }
    if (st == SR_OK) {
      float* norms = s->vnorm_layer(layer);
      st = check(gpuMemcpyAsync(norms + static_cast<int64_t>(dst_page) * g.num_kv_heads,
                                norms + static_cast<int64_t>(src_page) * g.num_kv_heads, sizeof(float) * g.num_kv_heads,
                                gpuMemcpyDeviceToDevice, stream),
                 "copying a shared page", err);
    }
  }
  // The write that follows may run on another stream: the copy must be done by then.
  if (st == SR_OK) st = check(gpuStreamSynchronize(stream), "copying a shared page", err);
  return st;
}

// The page's V-norm summary over its remaining rows. Its spectral summaries are kept: a value of
// the longer content bounds every subset of its rows, and the next write into the page resets them.
sr_status trim_page(sr_backend_storage* s, int32_t layer, int32_t page, int32_t valid_tokens, sr_backend_error* err) {
  DeviceScope scope(s->device);
  const sr_cache_geometry& g = s->geometry;
  trim_page_kernel<<<g.num_kv_heads, kStorageThreads, 0, s->device->stream>>>(
      s->v_layer(layer), s->v_scale_layer(layer), s->vnorm_layer(layer), g.dtype, g.num_kv_heads, g.head_dim, g.page_tokens, page, valid_tokens);
  return check(gpuGetLastError(), "launching the trim kernel", err);
}

sr_status sequence_update(sr_backend_storage* s, int64_t slot, const int32_t* pages, int64_t n_pages,
                          const int64_t* lengths, sr_backend_error* err) {
  DeviceScope scope(s->device);
  gpuStream_t stream = s->update_stream;
  s->update_stream = s->device->stream;
  const int32_t layers = s->geometry.num_layers;
  sr_status st = SR_OK;
  try {
    if (slot >= s->slot_capacity || n_pages > s->tables.page_stride) {
      int64_t slots = slot >= s->slot_capacity ? std::max(2 * s->slot_capacity, slot + 1) : s->slot_capacity;
      int64_t stride = n_pages > s->tables.page_stride
                           ? std::min<int64_t>(std::max(2 * s->tables.page_stride, n_pages), std::max<int64_t>(s->geometry.num_pages, n_pages))
                           : s->tables.page_stride;
      st = grow_tables(s, slots, stride, err);
      if (st != SR_OK) return st;
    }
    std::vector<int32_t>& sent = s->sent_pages[slot];
    std::vector<int64_t>& sent_len = s->sent_lengths[slot];
    std::vector<int64_t> zeros(layers, 0);
    const int64_t* new_len = lengths ? lengths : zeros.data();
    // Page entries from the first one that changed.
    int64_t first = 0;
    while (first < n_pages && first < static_cast<int64_t>(sent.size()) && sent[first] == pages[first]) ++first;
    if (first < n_pages) {
      st = scatter_words(reinterpret_cast<uint32_t*>(s->tables.pages + slot * s->tables.page_stride + first),
                         reinterpret_cast<const uint32_t*>(pages + first), n_pages - first, stream, err);
      if (st != SR_OK) return st;
    }
    // Lengths of the layers that changed.
    int32_t lo = 0, hi = layers;
    while (lo < layers && sent_len[lo] == new_len[lo]) ++lo;
    while (hi > lo && sent_len[hi - 1] == new_len[hi - 1]) --hi;
    if (lo < hi) {
      st = scatter_words(reinterpret_cast<uint32_t*>(s->tables.lengths + slot * layers + lo),
                         reinterpret_cast<const uint32_t*>(new_len + lo), 2 * static_cast<int64_t>(hi - lo), stream, err);
      if (st != SR_OK) return st;
    }
    sent.assign(pages, pages + n_pages);
    sent_len.assign(new_len, new_len + layers);
  } catch (const std::bad_alloc&) {
    set_backend_error(err, "out of host memory while updating the device page table");
    return SR_ERR_OUT_OF_MEMORY;
  }
  return SR_OK;
}

}  // namespace sr::gpu
