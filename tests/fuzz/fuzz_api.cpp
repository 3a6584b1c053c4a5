// libFuzzer entry point: each input is a program of public API calls (see harness.cpp for the
// call table and make_corpus.py for the byte layout). Everything is freed at the end of the
// input, so LeakSanitizer sees any leak the library has.
#include <cstddef>
#include <cstdint>

#include "harness.h"

namespace {
// Enough calls for long sequences of appends, forks and decodes; few enough that an input
// runs in milliseconds.
constexpr int kMaxCallsPerInput = 96;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sr_fuzz::ByteReader in(data, size);
  sr_fuzz::Harness harness(in);
  for (int i = 0; i < kMaxCallsPerInput && !in.empty(); ++i) harness.step();
  return 0;
}
