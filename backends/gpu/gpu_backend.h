// The GPU backend's device and storage (host side), shared by its table, storage and decode
// files. Compiled by nvcc for CUDA (and by hipcc for HIP from the same sources).
#pragma once

#include <cstdarg>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "compat.h"
#include "core/backend_error.h"
#include "core/backend_iface.h"
#include "gpu_types.h"
#include "launch_plan.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "tuning.h"

struct sr_backend_device {
  int32_t index = 0;
  gpuStream_t stream = nullptr;  // the context's stream (nullptr: the default stream)
  std::string name;
  int32_t sm_count = 1;
  // Decode launches overlap the end of the kernel before them (programmatic dependent launch,
  // sm_90 and later on CUDA, unless tuning.programmatic_launch is off).
  bool programmatic_launch = false;
  sr::gpu::Tuning tuning;  // read when the device opened
  sr::gpu::DeviceStats* stats = nullptr;  // device memory
};

struct sr_backend_storage {
  sr_backend_device* device = nullptr;
  sr_cache_geometry geometry{};
  size_t element_size = 0;
  int64_t page_elements = 0;   // kv_heads * page_tokens * head_dim
  int64_t layer_elements = 0;  // num_pages * page_elements
  void* k = nullptr;           // [layers][pages][kv_heads][page_tokens][head_dim]
  void* v = nullptr;
  float* vnorm = nullptr;      // [layers][pages][kv_heads]
  // Spectral summaries [layers][pages][kv_heads][kSpectralSlots] (tree_min_bound.h), +inf
  // where none is known.
  float* vspectral = nullptr;
  // Reference compensation (reference_compensation.h): summaries of the rows minus the layer's
  // reference [layers][pages][kv_heads][kCentredSlots] (+inf where none is known), the
  // references [layers][kv_heads][head_dim], and (host side) which layers' are frozen.
  float* vcentred = nullptr;
  float* vreference = nullptr;
  std::vector<unsigned char> reference_frozen;
  // FP8 caches: one f32 scale per row (a token's K or V of one kv-head), laid out as the CPU's,
  // [layers][pages][kv_heads][page_tokens]; null for other dtypes.
  float* k_scale = nullptr;
  float* v_scale = nullptr;

  // Device page tables (see DeviceTables) and what was last sent for each slot.
  sr::gpu::DeviceTables* tables_device = nullptr;
  sr::gpu::DeviceTables tables{};
  int64_t slot_capacity = 0;
  std::vector<std::vector<int32_t>> sent_pages;
  std::vector<std::vector<int64_t>> sent_lengths;
  // Stream of the change in progress: an append's stream, else the context's.
  gpuStream_t update_stream = nullptr;

  // Decode workspace, sized at creation.
  float* part_o = nullptr;
  float4* part_state = nullptr;
  unsigned long long* group_tally = nullptr;
  uint32_t* group_skipped = nullptr;
  uint32_t* next_weight = nullptr;
  unsigned int* groups_merged = nullptr;
  unsigned int* arrivals = nullptr;
  unsigned int* redo = nullptr;
  int64_t group_capacity = 0;  // (batch entry, kv-head, head tile) slots of one launch
  int64_t split_capacity = 0;  // (group slot, split) pairs of one launch
  // Decode steps on one cache share the workspace: their launches are enqueued as one unit.
  std::mutex decode_mutex;

  char* k_layer(int32_t layer) const {
    return static_cast<char*>(k) + static_cast<size_t>(layer) * layer_elements * element_size;
  }
  char* v_layer(int32_t layer) const {
    return static_cast<char*>(v) + static_cast<size_t>(layer) * layer_elements * element_size;
  }
  int64_t layer_rows() const {
    return static_cast<int64_t>(geometry.num_pages) * geometry.num_kv_heads * geometry.page_tokens;
  }
  float* k_scale_layer(int32_t layer) const { return k_scale ? k_scale + layer * layer_rows() : nullptr; }
  float* v_scale_layer(int32_t layer) const { return v_scale ? v_scale + layer * layer_rows() : nullptr; }
  float* vnorm_layer(int32_t layer) const {
    return vnorm + static_cast<int64_t>(layer) * geometry.num_pages * geometry.num_kv_heads;
  }
  int64_t spectral_floats_per_layer() const {
    return static_cast<int64_t>(geometry.num_pages) * geometry.num_kv_heads * sr::kSpectralSlots;
  }
  float* vspectral_layer(int32_t layer) const { return vspectral + layer * spectral_floats_per_layer(); }
  int64_t centred_floats_per_layer() const {
    return static_cast<int64_t>(geometry.num_pages) * geometry.num_kv_heads * sr::kCentredSlots;
  }
  float* vcentred_layer(int32_t layer) const { return vcentred + layer * centred_floats_per_layer(); }
  float* vreference_layer(int32_t layer) const {
    return vreference + static_cast<int64_t>(layer) * geometry.num_kv_heads * geometry.head_dim;
  }
};

namespace sr::gpu {

using sr::set_backend_error;

// SR_OK, or SR_ERR_DEVICE with the runtime's message about `what` in err.
sr_status check(gpuError_t status, const char* what, sr_backend_error* err);

// Makes the device current on this thread for the duration of a call.
struct DeviceScope {
  explicit DeviceScope(const sr_backend_device* device) { (void)gpuSetDevice(device->index); }
};

sr_status storage_create(sr_backend_device*, const sr_cache_geometry*, sr_backend_storage**, sr_backend_error*);
void storage_destroy(sr_backend_storage*);
sr_status write_tokens(sr_backend_storage*, int32_t layer, const int32_t* pages, int64_t first_token,
                       int64_t n_tokens, const void* k, const void* v, const sr_kv_io* io, sr_backend_error*);
sr_status read_tokens(const sr_backend_storage*, int32_t layer, const int32_t* pages, int64_t first_token,
                      int64_t n_tokens, void* k_out, void* v_out, const sr_kv_io* io, sr_backend_error*);
sr_status copy_page(sr_backend_storage*, int32_t src_page, int32_t dst_page, sr_backend_error*);
sr_status trim_page(sr_backend_storage*, int32_t layer, int32_t page, int32_t valid_tokens, sr_backend_error*);
sr_status sequence_update(sr_backend_storage*, int64_t slot, const int32_t* pages, int64_t n_pages,
                          const int64_t* lengths, sr_backend_error*);
sr_status decode(sr_backend_device*, sr_backend_storage*, const sr_step_desc*, sr_backend_error*);
sr_status merge_states(sr_backend_device*, const sr_merge_desc*, sr_backend_error*);

// The blocks of one launch: a block per (split, kv-head x tile, batch entry); each build orders
// them in the grid its own way (heads_fastest in kernels/decode_kernel.cuh).
struct LaunchBlocks {
  unsigned splits, head_tiles, batch;
};
// One compiled decode kernel: its launcher and how many of its blocks fit on one SM; launch is
// nullptr for a build not compiled (a head_dim the backend does not have).
struct DecodeKernel {
  gpuError_t (*launch)(const DecodeParams& params, const LaunchBlocks& blocks, gpuStream_t stream,
                       bool programmatic) = nullptr;
  int32_t (*blocks_per_sm)() = nullptr;
};
// The build of a cache dtype (kernels/decode_<dtype>.cu).
DecodeKernel decode_kernel_f32(const KernelBuild& build);
DecodeKernel decode_kernel_f16(const KernelBuild& build);
DecodeKernel decode_kernel_bf16(const KernelBuild& build);
DecodeKernel decode_kernel_fp8(const KernelBuild& build);
DecodeKernel decode_kernel(int32_t dtype, const KernelBuild& build);

}  // namespace sr::gpu
