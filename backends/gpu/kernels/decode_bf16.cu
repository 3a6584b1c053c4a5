// Decode kernels for bf16 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_bf16(const KernelBuild& build) { return find_instance<SR_DTYPE_BF16>(build); }
}  // namespace sr::gpu
