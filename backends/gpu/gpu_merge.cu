// sr_merge_attention_states on a GPU backend: one launch on the call's stream (kernels/merge_kernel.cuh).
#include "gpu_backend.h"
#include "kernels/merge_kernel.cuh"

namespace sr::gpu {

sr_status merge_states(sr_backend_device* device, const sr_merge_desc* desc, sr_backend_error* err) {
  const sr_merge_desc& a = *desc;
  if (a.rows > 0x7fffffff) {
    set_backend_error(err, "rows = %lld exceeds the %s backend's grid (2^31 - 1 rows per call)",
                      static_cast<long long>(a.rows), SR_GPU_VENDOR);
    return SR_ERR_OUT_OF_RANGE;
  }
  DeviceScope scope(device);
  MergeParams p{};
  for (int32_t i = 0; i < a.num_states; ++i) {
    p.outs[i] = a.state_outs[i];
    p.lses[i] = a.state_lses[i];
    p.bounds[i] = a.state_bounds ? a.state_bounds[i] : nullptr;
  }
  p.num_states = a.num_states;
  p.head_dim = a.head_dim;
  p.state_dtype = a.state_dtype;
  p.out_dtype = a.out_dtype;
  p.out = a.out;
  p.lse = a.lse;
  p.bound = a.bound;
  gpuStream_t stream = a.stream ? static_cast<gpuStream_t>(a.stream) : device->stream;
  merge_states_kernel<<<static_cast<unsigned>(a.rows), kMergeThreads, 0, stream>>>(p);
  return check(gpuGetLastError(), "launching the merge kernel", err);
}

}  // namespace sr::gpu
