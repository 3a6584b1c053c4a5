// Decode kernels for f16 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_f16(int32_t head_dim, int32_t tile_heads, bool favour_occupancy, bool tau_stream) {
  return pick_launcher<SR_DTYPE_F16>(head_dim, tile_heads, favour_occupancy, tau_stream);
}
}  // namespace sr::gpu
