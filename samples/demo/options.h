// Command-line flags of the demo.
#pragma once

#include <cstdint>
#include <string>

#include "sinkrouter/sinkrouter.h"

struct DemoOptions {
  sr_backend backend = SR_BACKEND_CPU;
  int64_t context = 65536;
  int32_t kv_heads = 8;
  int32_t group = 4;
  int32_t head_dim = 128;
  int32_t page_tokens = 16;
  sr_dtype dtype = SR_DTYPE_BF16;
  float tau = 10.f;
  float budget = 1e-3f;
  int64_t route_from = -1;  // sr_decode_args.route_from_tokens: -1 = the backend's threshold
  int32_t steps = 3;
  int32_t threads = 0;
  bool sink_heavy = true;
  uint64_t seed = 1;
};

// Parses argv; on --help or a bad flag prints usage and returns false (exit code in *status).
bool parse_demo_options(int argc, char** argv, DemoOptions* options, int* status);
