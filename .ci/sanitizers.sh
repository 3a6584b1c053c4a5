#!/usr/bin/env bash
# The whole test suite under the sanitizers: the `asan` workflow (AddressSanitizer with
# LeakSanitizer, and UndefinedBehaviorSanitizer) and the `tsan` workflow (ThreadSanitizer, which
# checks the concurrency tests). Each configures, builds and runs ctest in its own build folder;
# any report stops the test that made it, and the script fails.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
failed=()

run() {  # name, then the environment assignments for it
  local preset=$1
  shift
  echo "+ env $* cmake --workflow --preset $preset"
  if env "$@" cmake --workflow --preset "$preset"; then
    echo "sanitizers: $preset PASSED"
  else
    echo "sanitizers: $preset FAILED" >&2
    failed+=("$preset")
  fi
}

run asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# ThreadSanitizer leaves out the real-attention tests (its test preset's filter): they take the
# thread pool's paths every other test takes, at 30-50x their speed (40 minutes of a 2-core CI
# run under TSan, against 2 in the release suite); AddressSanitizer runs them.
run tsan TSAN_OPTIONS=halt_on_error=1

if (( ${#failed[@]} > 0 )); then
  echo "SANITIZERS FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "sanitizers: PASSED (asan + leak check + ubsan, tsan)"
