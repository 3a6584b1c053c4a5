# The GPU backend's sources, one list for the CUDA and the HIP builds. Set SR_GPU_COMMON to
# this folder first.
set(SR_GPU_SOURCES
  ${SR_GPU_COMMON}/gpu_table.cu
  ${SR_GPU_COMMON}/gpu_storage.cu
  ${SR_GPU_COMMON}/gpu_decode.cu
  ${SR_GPU_COMMON}/decode_f32.cu
  ${SR_GPU_COMMON}/decode_f16.cu
  ${SR_GPU_COMMON}/decode_bf16.cu)
