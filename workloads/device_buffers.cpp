#include "device_buffers.h"

#include <cstddef>
#include <cstring>
#include <vector>

namespace sr::workloads {

#if defined(SR_WORKLOADS_HAVE_CUDA)
const DeviceMemoryOps* cuda_memory_ops();
#endif
#if defined(SR_WORKLOADS_HAVE_HIP)
const DeviceMemoryOps* hip_memory_ops();
#endif

const DeviceMemoryOps* device_memory(sr_backend backend) {
#if defined(SR_WORKLOADS_HAVE_CUDA)
  if (backend == SR_BACKEND_CUDA) return cuda_memory_ops();
#endif
#if defined(SR_WORKLOADS_HAVE_HIP)
  if (backend == SR_BACKEND_HIP) return hip_memory_ops();
#endif
  (void)backend;
  return nullptr;
}

namespace {
// Whether args (of its caller's struct_size) holds the 0.3.0 fields: an older caller's struct
// ends before them, and whatever lies there is not read.
bool has_variant_fields(const sr_decode_args& a) {
  return a.struct_size >= offsetof(sr_decode_args, logit_soft_cap) + sizeof a.logit_soft_cap;
}
size_t heads_bytes(const sr_decode_args& a) { return sizeof(float) * a.batch * a.num_q_heads; }
}  // namespace

sr_status decode_with_host_buffers(sr_context* context, const sr_kv_cache* cache, const sr_decode_args& args,
                                   int32_t head_dim) {
  sr_backend backend = SR_BACKEND_CPU;
  if (context && sr_context_backend(context, &backend) != SR_OK) backend = SR_BACKEND_CPU;
  const size_t rows = static_cast<size_t>(args.batch > 0 ? args.batch : 0) *
                      static_cast<size_t>(args.num_q_heads > 0 ? args.num_q_heads : 0);
  const DeviceMemoryOps* mem = device_memory(backend);
  const size_t q_bytes = rows * head_dim * sr_dtype_size(args.q_dtype);
  const size_t out_bytes = rows * head_dim * sr_dtype_size(args.out_dtype);
  if (!mem) {
    if (args.out) std::memset(args.out, 0xff, out_bytes);
    if (args.head_skipped_mass) std::memset(args.head_skipped_mass, 0xff, heads_bytes(args));
    if (args.head_error_bound) std::memset(args.head_error_bound, 0xff, heads_bytes(args));
    if (has_variant_fields(args) && args.lse) std::memset(args.lse, 0xff, heads_bytes(args));
    return sr_decode_step(context, cache, &args);
  }
  sr_decode_args dev = args;
  std::vector<void*> owned;
  auto mirror = [&](const void* host, size_t bytes, bool upload) -> void* {
    if (!host) return nullptr;
    void* p = mem->alloc(bytes);
    owned.push_back(p);
    if (upload) mem->to_device(p, host, bytes);
    else mem->poison(p, bytes);
    return p;
  };
  dev.q = mirror(args.q, q_bytes, true);
  dev.out = mirror(args.out, out_bytes, false);
  dev.head_skipped_mass = static_cast<float*>(mirror(args.head_skipped_mass, heads_bytes(args), false));
  dev.head_error_bound = static_cast<float*>(mirror(args.head_error_bound, heads_bytes(args), false));
  if (has_variant_fields(args)) {
    dev.lse = static_cast<float*>(mirror(args.lse, heads_bytes(args), false));
    dev.sink_logits = static_cast<const float*>(mirror(args.sink_logits, sizeof(float) * args.num_q_heads, true));
  }
  sr_status status = sr_decode_step(context, cache, &dev);
  mem->synchronize();
  if (status == SR_OK) {
    if (args.out) mem->to_host(args.out, dev.out, out_bytes);
    if (args.head_skipped_mass) mem->to_host(args.head_skipped_mass, dev.head_skipped_mass, heads_bytes(args));
    if (args.head_error_bound) mem->to_host(args.head_error_bound, dev.head_error_bound, heads_bytes(args));
    if (has_variant_fields(args) && args.lse) mem->to_host(args.lse, dev.lse, heads_bytes(args));
  }
  for (void* p : owned) mem->release(p);
  return status;
}

}  // namespace sr::workloads
