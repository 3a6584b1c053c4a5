#include "test_backends.h"

#include <cstdlib>
#include <cstring>

namespace sr::testing {

std::string backend_label(sr_backend backend) { return sr_backend_name(backend); }

std::vector<sr_backend> test_backends() {
  std::vector<sr_backend> out;
  const char* only = std::getenv("SINKROUTER_TEST_BACKENDS");
  for (sr_backend kind : {SR_BACKEND_CPU, SR_BACKEND_CUDA, SR_BACKEND_HIP}) {
    if (only && !std::strstr(only, sr_backend_name(kind))) continue;
    if (kind != SR_BACKEND_CPU && !device_memory(kind)) continue;
    sr_context_options o;
    sr_context_options_default(&o, sizeof o);
    o.backend = kind;
    sr_context* ctx = nullptr;
    if (sr_context_create(&o, &ctx) == SR_OK) {
      out.push_back(kind);
      sr_context_destroy(ctx);
    }
  }
  return out;
}

}  // namespace sr::testing
