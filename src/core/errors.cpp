#include "core/errors.h"

#include <cstdarg>
#include <cstdio>

namespace sr {
namespace {
thread_local std::string t_last_error;
}

void set_last_error(const char* message) {
  try {
    t_last_error = message;
  } catch (...) {
    t_last_error.clear();  // out of memory while reporting: keep an empty message
  }
}

const char* last_error() { return t_last_error.c_str(); }

void fail(sr_status status, const char* format, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  throw Error(status, buffer);
}

void check_backend(sr_status status, const sr_backend_error& err, const char* what) {
  if (status == SR_OK) return;
  if (err.message[0] != '\0') fail(status, "%s: %s", what, err.message);
  fail(status, "%s failed (%s)", what, sr_status_string(status));
}

}  // namespace sr
