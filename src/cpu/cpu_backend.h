// The CPU backend's device and storage, shared by its storage, decode and table files.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/backend_error.h"
#include "core/backend_iface.h"
#include "cpu/split_kernel.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "cpu/thread_pool.h"

struct sr_backend_device {
  std::unique_ptr<sr::cpu::ThreadPool> pool;
  sr::cpu::SplitKernel split_kernel = nullptr;
  bool compensate = true;  // SINKROUTER_CPU_COMPENSATION=0: no reference and no centred summaries
                           // are kept, and routed splits never compensate (for comparison)
  std::string name;
  std::mutex stats_mutex;
  sr_decode_stats stats{};
};

struct sr_backend_storage {
  sr_backend_device* device = nullptr;  // its thread pool computes the spectral summaries
  sr_cache_geometry geometry{};
  size_t element_size = 0;
  int64_t page_elements = 0;   // kv_heads * page_tokens * head_dim
  int64_t layer_elements = 0;  // num_pages * page_elements
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  std::unique_ptr<unsigned char, FreeDeleter> k, v;  // [layers][pages][kv_heads][page_tokens][dim]
  std::unique_ptr<float, FreeDeleter> vnorm;          // [layers][pages][kv_heads]
  // Spectral summaries: [layers][pages][kv_heads][kSpectralSlots] (tree_min_bound.h).
  std::unique_ptr<float, FreeDeleter> vspectral;
  // Reference compensation (reference_compensation.h): per layer and kv-head the frozen
  // reference [layers][kv_heads][head_dim], whether it is frozen yet, and the summaries of
  // the rows minus it, [layers][pages][kv_heads][kCentredSlots].
  std::unique_ptr<float, FreeDeleter> vreference;
  std::unique_ptr<unsigned char, FreeDeleter> reference_frozen;  // [layers]
  std::unique_ptr<float, FreeDeleter> vcentred;
  // FP8 caches only: one scale per row, [layers][pages][kv_heads][page_tokens].
  std::unique_ptr<float, FreeDeleter> k_scale, v_scale;

  unsigned char* k_layer(int32_t layer) const { return k.get() + layer * layer_elements * element_size; }
  unsigned char* v_layer(int32_t layer) const { return v.get() + layer * layer_elements * element_size; }
  int64_t layer_rows() const { return static_cast<int64_t>(geometry.num_pages) * geometry.num_kv_heads * geometry.page_tokens; }
  float* k_scale_layer(int32_t layer) const { return k_scale ? k_scale.get() + layer * layer_rows() : nullptr; }
  float* v_scale_layer(int32_t layer) const { return v_scale ? v_scale.get() + layer * layer_rows() : nullptr; }
  float* vnorm_layer(int32_t layer) const {
    return vnorm.get() + static_cast<int64_t>(layer) * geometry.num_pages * geometry.num_kv_heads;
  }
  float* vspectral_layer(int32_t layer) const {
    return vspectral.get() + static_cast<int64_t>(layer) * geometry.num_pages * geometry.num_kv_heads * sr::kSpectralSlots;
  }
  float* vcentred_layer(int32_t layer) const {
    return vcentred.get() + static_cast<int64_t>(layer) * geometry.num_pages * geometry.num_kv_heads * sr::kCentredSlots;
  }
  // The layer's reference ([kv_heads][head_dim]), nullptr until it is frozen.
  float* reference_layer(int32_t layer) const {
    return reference_frozen.get()[layer] ? vreference.get() + static_cast<int64_t>(layer) * geometry.num_kv_heads * geometry.head_dim
                                         : nullptr;
  }
};

namespace sr::cpu {

const sr_backend_i* backend_table();

// Storage operations (cpu_storage.cpp).
sr_status storage_create(sr_backend_device*, const sr_cache_geometry*, sr_backend_storage**, sr_backend_error*);
void storage_destroy(sr_backend_storage*);
sr_status write_tokens(sr_backend_storage*, int32_t layer, const int32_t* pages, int64_t first_token,
                       int64_t n_tokens, const void* k, const void* v, const sr_kv_io* io, sr_backend_error*);
sr_status read_tokens(const sr_backend_storage*, int32_t layer, const int32_t* pages, int64_t first_token,
                      int64_t n_tokens, void* k_out, void* v_out, const sr_kv_io* io, sr_backend_error*);
sr_status copy_page(sr_backend_storage*, int32_t src_page, int32_t dst_page, sr_backend_error*);
sr_status trim_page(sr_backend_storage*, int32_t layer, int32_t page, int32_t valid_tokens, sr_backend_error*);

// Decode (cpu_decode.cpp).
sr_status decode(sr_backend_device*, sr_backend_storage*, const sr_step_desc*, sr_backend_error*);
// Merging attention states (cpu_merge.cpp).
sr_status merge_states(sr_backend_device*, const sr_merge_desc*, sr_backend_error*);

// Element conversion between a buffer dtype (f32, f16, bf16) and f32, one value at a time.
float load_as_float(const void* base, int64_t index, sr_dtype dtype);
void store_from_float(void* base, int64_t index, sr_dtype dtype, float value);

using sr::set_backend_error;

}  // namespace sr::cpu
