// Decode kernels for f32 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_f32(const KernelBuild& build) { return find_instance<SR_DTYPE_F32>(build); }
}  // namespace sr::gpu
