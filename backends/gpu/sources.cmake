# The GPU backend's sources, one list for the CUDA and the HIP builds. Set SR_GPU_DIR to this
# folder first.
set(SR_GPU_SOURCES
  ${SR_GPU_DIR}/gpu_table.cu
  ${SR_GPU_DIR}/gpu_storage.cu
  ${SR_GPU_DIR}/gpu_decode.cu
  ${SR_GPU_DIR}/gpu_merge.cu
  ${SR_GPU_DIR}/launch_plan.cpp
  ${SR_GPU_DIR}/tuning.cpp
  ${SR_GPU_DIR}/kernels/decode_f32.cu
  ${SR_GPU_DIR}/kernels/decode_f16.cu
  ${SR_GPU_DIR}/kernels/decode_bf16.cu
  ${SR_GPU_DIR}/kernels/decode_fp8.cu)
