#!/usr/bin/env bash
# Installs what building and testing SinkRouter needs on Debian 12, from Debian's archive.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config  # the build
  libgtest-dev                                  # C/C++ tests (GoogleTest)
  libbenchmark-dev                              # the CPU benchmark (Google Benchmark)
  golang-go                                     # Go binding and its tests
  mono-mcs mono-runtime                         # C# binding and its tests
  python3 python3-numpy python3-pytest          # Python binding and its tests
  clang-14 libclang-rt-14-dev                   # libFuzzer harness, sanitizer runtimes
  abigail-tools                                 # ABI baseline check (abidiff)
)
if [[ "${SR_WITH_HIP:-0}" == 1 ]]; then
  packages+=(hipcc libamdhip64-dev rocm-device-libs)  # HIP backend
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
