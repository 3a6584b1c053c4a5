// What a C program may do with the API's enums and C++ may not: store any int in an enum field
// or pass it as an enum argument (C enums are ints; in C++ a value outside the enum's range is
// undefined behaviour in the caller). The harness does both through these helpers, so
// UndefinedBehaviorSanitizer reports only what the library does with such values.
#pragma once

#include <cstdint>
#include <cstring>

#include "sinkrouter/sinkrouter.h"

extern "C" {
const char* sr_fuzz_c_status_string(int value);  // c_callers.c
const char* sr_fuzz_c_backend_name(int value);
size_t sr_fuzz_c_dtype_size(int value);
}

namespace sr_fuzz {

// Stores `value` into an enum-typed field without forming an enum value in C++.
template <class Enum>
void store_raw(Enum& field, int32_t value) {
  static_assert(sizeof(Enum) == sizeof(int32_t), "C enums of the API are int-sized");
  std::memcpy(&field, &value, sizeof value);
}

}  // namespace sr_fuzz
