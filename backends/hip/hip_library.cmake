# Builds libsinkrouter-hip with clang in HIP mode (the sub-build's whole job).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "libsinkrouter-hip compiles its kernels in clang's HIP mode, but the C++ compiler is "
                      "${CMAKE_CXX_COMPILER_ID} (${CMAKE_CXX_COMPILER}): use clang++-15 (or hipcc)")
endif()

set(SR_SOURCE_DIR "${CMAKE_CURRENT_SOURCE_DIR}/../.." CACHE PATH "The SinkRouter source tree")
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Release)
endif()
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_VISIBILITY_PRESET hidden)
set(CMAKE_VISIBILITY_INLINES_HIDDEN ON)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

# Architectures: GPU_TARGETS, the variable ROCm's hip-config turns into --offload-arch flags.
# Default: the data-centre GPUs ROCm 5.2's clang knows (MI100, MI200, the first MI300 ID).
set(GPU_TARGETS "gfx908;gfx90a;gfx940" CACHE STRING "AMD GPU architectures to build for (--offload-arch)")
find_package(hip CONFIG REQUIRED)

# Debian keeps the device bitcode outside the ROCm layout clang assumes; hip-config found it
# (AMDDeviceLibs), so point clang at that folder and at the ROCm root of the HIP headers.
get_target_property(_sr_ockl ockl IMPORTED_LOCATION)
get_filename_component(SR_ROCM_DEVICE_LIB_PATH "${_sr_ockl}" DIRECTORY)
get_filename_component(SR_ROCM_PATH "${hip_INCLUDE_DIR}" DIRECTORY)

set(SR_GPU_DIR ${SR_SOURCE_DIR}/backends/gpu)
include(${SR_GPU_DIR}/sources.cmake)
set_source_files_properties(${SR_GPU_SOURCES} PROPERTIES LANGUAGE CXX)

add_library(sinkrouter-hip SHARED ${SR_GPU_SOURCES})
target_include_directories(sinkrouter-hip PRIVATE ${SR_SOURCE_DIR}/include ${SR_SOURCE_DIR}/src ${SR_GPU_DIR})
target_compile_options(sinkrouter-hip PRIVATE
  --rocm-path=${SR_ROCM_PATH}
  --rocm-device-lib-path=${SR_ROCM_DEVICE_LIB_PATH}
  # nvcc includes cuda_runtime.h before every source; clang 15 does not include the HIP
  # runtime for Debian's layout, and the shared headers expect __host__/__device__ defined.
  "SHELL:-include hip/hip_runtime.h"
  -Wall
  # ROCm 5.2 marks hipError_t [[nodiscard]]; cleanup paths ignore it on purpose, as on CUDA.
  -Wno-unused-result)
# hip::device adds -x hip, the --offload-arch flags and the HIP runtime.
target_link_libraries(sinkrouter-hip PRIVATE hip::device)
set_target_properties(sinkrouter-hip PROPERTIES LINK_DEPENDS ${SR_SOURCE_DIR}/cmake/sinkrouter.map)
target_link_options(sinkrouter-hip PRIVATE
  "LINKER:--version-script=${SR_SOURCE_DIR}/cmake/sinkrouter.map" "LINKER:--no-undefined")
