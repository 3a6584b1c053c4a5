// Turning failures into (status, message): internal code throws sr::Error; every public
// function runs inside sr::guard, which catches everything, records the message for
// sr_last_error() and returns the status. Nothing crosses the C boundary.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "core/backend_iface.h"
#include "sinkrouter/sinkrouter.h"

namespace sr {

class Error : public std::exception {
 public:
  Error(sr_status status, std::string message) : status_(status), message_(std::move(message)) {}
  sr_status status() const { return status_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  sr_status status_;
  std::string message_;
};

// printf-style message; throws Error.
[[noreturn]] void fail(sr_status status, const char* format, ...)
    __attribute__((format(printf, 2, 3)));

void set_last_error(const char* message);

// A backend call's status; throws with the backend's message on failure.
void check_backend(sr_status status, const sr_backend_error& err, const char* what);

template <class Body>
sr_status guard(Body&& body) noexcept {
  try {
    body();
    return SR_OK;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error("out of host memory");
    return SR_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return SR_ERR_INTERNAL;
  } catch (...) {
    set_last_error("unknown internal error");
    return SR_ERR_INTERNAL;
  }
}

// Argument checks used by every entry point.
template <class T>
void require_not_null(const T* p, const char* name) {
  if (p == nullptr) fail(SR_ERR_INVALID_ARGUMENT, "%s is NULL", name);
}

}  // namespace sr
