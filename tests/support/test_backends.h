// What lets one test suite run against every backend: the list of backends present here, and
// a decode call that takes host buffers on any of them (copied through device memory for GPUs).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "sinkrouter/sinkrouter.h"

namespace sr::testing {

// The CPU always, plus each GPU backend whose context opens on this machine.
// SINKROUTER_TEST_BACKENDS=cpu,cuda restricts the list.
std::vector<sr_backend> test_backends();
std::string backend_label(sr_backend backend);

// Device memory of a GPU backend, for tests. Implemented per vendor (device_memory_cuda.cpp).
struct DeviceMemoryOps {
  void* (*alloc)(size_t bytes);
  void (*release)(void* p);
  void (*to_device)(void* dst, const void* src, size_t bytes);
  void (*to_host)(void* dst, const void* src, size_t bytes);
  void (*poison)(void* dst, size_t bytes);  // every byte 0xff: NaN in f32, f16 and bf16
  void (*synchronize)();
};
// nullptr for the CPU (host memory) and for backends this test build has no support for.
const DeviceMemoryOps* device_memory(sr_backend backend);

// Runs sr_decode_step with args whose q, out, head_skipped_mass and head_error_bound point to
// host memory (q is [batch][num_q_heads][head_dim]); outputs are poisoned with NaN before the
// call, so unwritten rows show.
sr_status decode_with_host_buffers(sr_context* context, const sr_kv_cache* cache, const sr_decode_args& args,
                                   int32_t head_dim);

}  // namespace sr::testing
