#!/usr/bin/env bash
# Strips build/cuda to what the device needs (libraries, test and bench binaries, CTest files)
# into build/cuda-run, small enough to carry (the device tool carries at most 64 MiB).
set -eu
cd "$(dirname "$0")/../.."
rm -rf build/cuda-run
cp -a build/cuda build/cuda-run
# (CMakeFiles/Export holds the package files `cmake --install` copies: the install test needs them.)
mv build/cuda-run/CMakeFiles/Export build/cuda-run/Export.keep
find build/cuda-run \( -name CMakeFiles -o -name bindings \) -prune -exec rm -rf {} +
mkdir -p build/cuda-run/CMakeFiles && mv build/cuda-run/Export.keep build/cuda-run/CMakeFiles/Export
# (The install test's own build tree: that test runs in CI, not on the device.)
rm -rf build/cuda-run/tests/install_consumer
find build/cuda-run \( -name '*.o' -o -name '*.a' -o -name '*.ninja' -o -name '.ninja_*' \) -delete
strip --strip-unneeded build/cuda-run/lib/*.so* build/cuda-run/tests/sr_tests build/cuda-run/tests/gpu/sr_gpu_tests \
  build/cuda-run/bench/gpu/sr_gpu_bench 2>/dev/null || true
# Only the current library version, and the CUDA plugin xz-compressed (22 MB -> 5 MB: the carry
# limit counts the tracked tree too); run_device.sh unpacks it.
find build/cuda-run/lib -name 'libsinkrouter.so.*.*.*' ! -name "$(readlink build/cuda-run/lib/libsinkrouter.so.1)" -delete
xz -T2 -6 -f build/cuda-run/lib/libsinkrouter-cuda.so
# The CPU benchmark's Google Benchmark library, which the device lacks (found through the RPATH).
cp -L /usr/lib/x86_64-linux-gnu/libbenchmark.so.1debian build/cuda-run/lib/ 2>/dev/null || true
# The real-attention data the suite and the benchmark read, carried as .realattn (ignored by git).
if [ ! -f .realattn/manifest.json ] && [ -f ../shared/data/realattn/manifest.json ]; then
  rm -rf .realattn && cp -r ../shared/data/realattn .realattn
fi
# CTest's GoogleTest discovery script of this CMake (the device's CMake differs).
cp /usr/share/cmake-*/Modules/GoogleTestAddTests.cmake build/cuda-run/
du -sh build/cuda-run .realattn
