// Writing a backend's error message: shared by the CPU backend and the GPU backends, which
// report failures through sr_backend_error (backend_iface.h) rather than exceptions.
#pragma once

#include <cstdarg>
#include <cstdio>

#include "core/backend_iface.h"

namespace sr {

// printf-style message into *err (truncated to its buffer); a NULL err is ignored.
inline void set_backend_error(sr_backend_error* err, const char* format, ...) {
  if (!err) return;
  va_list args;
  va_start(args, format);
  std::vsnprintf(err->message, sizeof err->message, format, args);
  va_end(args);
}

}  // namespace sr
