// Options structs that grow: struct_size says how much of the struct the caller knows.
// read_struct copies that prefix over the defaults; fill_default writes defaults into the
// caller's prefix. Only sizes this library knows are accepted.
#pragma once

#include <cstring>

#include "core/errors.h"

namespace sr {

// Every struct is at its first (v1) size today; a later version lists its older sizes here.
template <class T>
void check_struct_size(size_t struct_size, const char* name) {
  if (struct_size != sizeof(T)) {
    fail(SR_ERR_STRUCT_SIZE, "%s.struct_size = %zu, but this library (%s) knows %s of %zu bytes",
         name, struct_size, SR_VERSION_STRING, name, sizeof(T));
  }
}

template <class T>
T read_struct(const T* in, const char* name, void (*defaults)(T*)) {
  T value;
  defaults(&value);
  if (in == nullptr) return value;
  check_struct_size<T>(in->struct_size, name);
  std::memcpy(&value, in, in->struct_size);
  return value;
}

template <class T>
void fill_default(T* out, size_t struct_size, const char* name, void (*defaults)(T*)) {
  require_not_null(out, name);
  check_struct_size<T>(struct_size, name);
  T value;
  defaults(&value);
  std::memcpy(out, &value, struct_size);
}

}  // namespace sr
