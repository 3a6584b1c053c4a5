// Decode kernels for bf16 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_bf16(int32_t head_dim, int32_t tile_heads, bool favour_occupancy, bool tau_stream) {
  return pick_launcher<SR_DTYPE_BF16>(head_dim, tile_heads, favour_occupancy, tau_stream);
}
}  // namespace sr::gpu
