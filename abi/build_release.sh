#!/usr/bin/env bash
# Builds libsinkrouter as a Release library with DWARF (-g: abidw and abidiff read the types
# from it) in build/abi, and prints the library's path. Used by update_baseline.sh and
# .ci/abi_check.sh so both look at the same kind of build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/abi"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DCMAKE_CXX_FLAGS=-g \
  -DSR_BUILD_TESTS=OFF -DSR_BUILD_SAMPLES=OFF -DSR_BUILD_BENCH=OFF -DSR_BUILD_FUZZ=OFF >&2
cmake --build "$build" --target sinkrouter >&2
library=$(find "$build" -name libsinkrouter.so -print -quit)
if [[ -z "$library" ]]; then
  echo "build_release.sh: no libsinkrouter.so under $build" >&2
  exit 1
fi
echo "$library"
