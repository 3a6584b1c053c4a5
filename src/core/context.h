// The context handle: one opened backend device. Caches hold a reference, so a context
// destroyed before its caches lives on until the last of them is gone.
#pragma once

#include <atomic>

#include "core/backend_iface.h"

struct sr_context {
  sr_backend backend = SR_BACKEND_CPU;
  int32_t device_index = 0;
  const sr_backend_i* iface = nullptr;
  sr_backend_device* device = nullptr;
  std::atomic<int64_t> references{1};
};

namespace sr {
void context_retain(sr_context* context);
void context_release(sr_context* context);
}  // namespace sr
