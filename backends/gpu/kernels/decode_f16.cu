// Decode kernels for f16 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_f16(const KernelBuild& build) { return find_instance<SR_DTYPE_F16>(build); }
}  // namespace sr::gpu
