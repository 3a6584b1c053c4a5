// A C caller may store any int in an enum-typed field or argument; in C++, loading a value
// outside the enum's range is undefined, so validation reads the bits as an int first.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/errors.h"

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

// Throws SR_ERR_UNSUPPORTED unless `bits` (the field named `field`) is a buffer dtype; FP8 gets
// its own message, since it is a valid sr_dtype.
inline void require_buffer_dtype(int32_t bits, const char* field) {
  if (bits == SR_DTYPE_FP8_E4M3) {
    fail(SR_ERR_UNSUPPORTED, "%s = SR_DTYPE_FP8_E4M3: FP8 is a cache element type only; buffers are f32, f16 or bf16",
         field);
  }
  if (!is_buffer_dtype(bits)) fail(SR_ERR_UNSUPPORTED, "%s = %d is not an sr_dtype value", field, bits);
}

}  // namespace sr
