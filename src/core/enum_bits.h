// A C caller may store any int in an enum-typed field or argument; in C++, loading a value
// outside the enum's range is undefined, so validation reads the bits as an int first.
#pragma once

#include <cstdint>
#include <cstring>

namespace sr {

template <class E>
int32_t enum_bits(const E& value) {
  static_assert(sizeof(E) == sizeof(int32_t), "C enums are int-sized on every supported ABI");
  int32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// Element types of a cache: F32, F16, BF16, FP8_E4M3.
inline bool is_cache_dtype(int32_t bits) { return bits >= 0 && bits <= 3; }
// Element types of a caller's buffer (q, out, K/V transfers): F32, F16, BF16.
inline bool is_buffer_dtype(int32_t bits) { return bits >= 0 && bits <= 2; }

}  // namespace sr
