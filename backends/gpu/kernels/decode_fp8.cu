// Decode kernels for FP8 E4M3 caches.
#include "decode_instances.cuh"

namespace sr::gpu {
DecodeKernel decode_kernel_fp8(const KernelBuild& build) { return find_instance<SR_DTYPE_FP8_E4M3>(build); }
}  // namespace sr::gpu
