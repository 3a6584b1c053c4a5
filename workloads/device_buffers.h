// Host programs (tests, samples, the benchmark) that hold q and out in host memory run a
// decode step on any backend through this: GPU backends get the buffers copied through
// device memory. Device memory comes from a per-vendor table (device_memory_cuda.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "sinkrouter/sinkrouter.h"

namespace sr::workloads {

struct DeviceMemoryOps {
  void* (*alloc)(size_t bytes);
  void (*release)(void* p);
  void (*to_device)(void* dst, const void* src, size_t bytes);
  void (*to_host)(void* dst, const void* src, size_t bytes);
  void (*poison)(void* dst, size_t bytes);  // every byte 0xff: NaN in f32, f16 and bf16
  void (*synchronize)();
};

// nullptr for the CPU (host memory) and for GPU backends this build has no support for.
const DeviceMemoryOps* device_memory(sr_backend backend);

// Runs sr_decode_step with args whose q, out, head_skipped_mass and head_error_bound point to
// host memory (q is [batch][num_q_heads][head_dim]); outputs are poisoned with NaN before the
// call, so unwritten rows show.
sr_status decode_with_host_buffers(sr_context* context, const sr_kv_cache* cache, const sr_decode_args& args,
                                   int32_t head_dim);

}  // namespace sr::workloads
