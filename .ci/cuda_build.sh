#!/usr/bin/env bash
# CI: builds the CUDA backend (preset cuda, and the variant linked into one libsinkrouter) and
# runs those builds' tests. CI has no NVIDIA GPU: the GPU tests skip, everything else runs with
# libsinkrouter-cuda beside the core (an explicit CUDA request must fail cleanly). Skipped, with
# a message, on a machine without nvcc: the CUDA toolkit is not in Debian's main archive.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null; then
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH=/usr/local/cuda/bin:$PATH
  else
    echo "cuda_build: no nvcc on this machine: the CUDA backend is not built here"
    exit 0
  fi
fi
echo "cuda_build: $(nvcc --version | tail -1)"

cmake --preset cuda -DSR_BUILD_BINDINGS=OFF -DSR_BUILD_SAMPLES=OFF
cmake --build --preset cuda
ctest --preset cuda

# One .so for engines that vendor a single library: the CUDA backend linked into the core. Built
# for sm_90 only and with the phase tracing of bench/gpu/trace_phases.py compiled in, so one more
# nvcc pass (3-4 minutes on 2 cores) checks both variants; the GPU tests skip here, so the
# tracing stamps change nothing this build's tests see.
cmake -S . -B build/cuda-linked -G Ninja -DCMAKE_BUILD_TYPE=Release -DSR_BUILD_CUDA=ON -DSR_CUDA_LINKED=ON \
  -DSR_CUDA_PHASE_TRACE=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSR_BUILD_BINDINGS=OFF -DSR_BUILD_SAMPLES=OFF -DSR_BUILD_BENCH=OFF
cmake --build build/cuda-linked
ctest --test-dir build/cuda-linked --output-on-failure --no-tests=error
echo "cuda_build: libsinkrouter-cuda and the linked libsinkrouter (with phase tracing) built, their tests passed (GPU tests skip without a GPU)"
