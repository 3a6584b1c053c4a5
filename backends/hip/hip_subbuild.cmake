# The main build's side: configures and builds this folder as a sub-build with the HIP
# compiler (BUILD_ALWAYS: its own Ninja decides what is stale) and puts libsinkrouter-hip.so
# beside libsinkrouter, where the core's loader looks first.
include(ExternalProject)

find_program(SR_HIP_COMPILER NAMES clang++-15 hipcc PATHS /opt/rocm/llvm/bin /opt/rocm/bin
             DOC "clang++ with the AMDGPU target (or hipcc) that compiles the HIP backend")
if(NOT SR_HIP_COMPILER)
  message(FATAL_ERROR "SR_BUILD_HIP: no HIP compiler found (clang++-15 or hipcc). On Debian 12: "
                      "apt-get install hipcc libamdhip64-dev rocm-device-libs; elsewhere set SR_HIP_COMPILER.")
endif()
set(GPU_TARGETS "" CACHE STRING
    "AMD GPU architectures of the HIP backend, e.g. gfx90a;gfx1030 (empty: backends/hip/hip_library.cmake's list)")

set(SR_HIP_LIBRARY_FILE ${CMAKE_LIBRARY_OUTPUT_DIRECTORY}/libsinkrouter-hip.so)
set(_sr_hip_cache_args
  -DCMAKE_CXX_COMPILER:FILEPATH=${SR_HIP_COMPILER}
  -DCMAKE_BUILD_TYPE:STRING=${CMAKE_BUILD_TYPE}
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY:PATH=${CMAKE_LIBRARY_OUTPUT_DIRECTORY}
  -DSR_SOURCE_DIR:PATH=${PROJECT_SOURCE_DIR})
if(GPU_TARGETS)
  list(APPEND _sr_hip_cache_args -DGPU_TARGETS:STRING=${GPU_TARGETS})
endif()

ExternalProject_Add(sinkrouter-hip
  SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}
  BINARY_DIR ${CMAKE_CURRENT_BINARY_DIR}/subbuild
  CMAKE_GENERATOR ${CMAKE_GENERATOR}
  CMAKE_CACHE_ARGS ${_sr_hip_cache_args}
  BUILD_ALWAYS ON
  BUILD_BYPRODUCTS ${SR_HIP_LIBRARY_FILE}
  INSTALL_COMMAND ""
  USES_TERMINAL_CONFIGURE ON
  USES_TERMINAL_BUILD ON)

install(PROGRAMS ${SR_HIP_LIBRARY_FILE} DESTINATION ${CMAKE_INSTALL_LIBDIR})
