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

inline bool is_storage_dtype(int32_t bits) { return bits >= 0 && bits <= 2; }  // F32, F16, BF16

}  // namespace sr
