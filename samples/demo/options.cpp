#include "options.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

const char* kUsage =
    "usage: sinkrouter_demo [flags]\n"
    "  --backend cpu|cuda|hip|auto   backend (default cpu)\n"
    "  --context N                   tokens of context (default 65536)\n"
    "  --kv-heads N                  kv-heads (default 8)\n"
    "  --group N                     q-heads per kv-head (default 4)\n"
    "  --head-dim 64|128|256         (default 128)\n"
    "  --page 16|32|64|128           tokens per page (default 16)\n"
    "  --dtype bf16|f16|f32|fp8      cache dtype (default bf16; fp8 = fp8_e4m3, with a scale per\n"
    "                                token and kv-head)\n"
    "  --tau X                       logit gap of tau routing (default 10)\n"
    "  --budget X                    relative error budget of budget routing (default 1e-3)\n"
    "  --route-from N                route steps from N tokens; shorter ones run dense\n"
    "                                (default -1: the backend's threshold; 0: always route)\n"
    "  --mix sink-heavy|mixed        head mix of the synthetic context (default sink-heavy)\n"
    "  --steps N                     decode steps per mode (default 3)\n"
    "  --threads N                   CPU threads, 0 = all cores (default 0)\n"
    "  --seed N                      generator seed (default 1)\n";

bool parse_backend(const char* s, sr_backend* out) {
  const struct { const char* name; sr_backend value; } table[] = {
      {"cpu", SR_BACKEND_CPU}, {"cuda", SR_BACKEND_CUDA}, {"hip", SR_BACKEND_HIP}, {"auto", SR_BACKEND_AUTO}};
  for (const auto& entry : table) {
    if (std::strcmp(s, entry.name) == 0) {
      *out = entry.value;
      return true;
    }
  }
  return false;
}

bool parse_dtype(const char* s, sr_dtype* out) {
  if (std::strcmp(s, "bf16") == 0) *out = SR_DTYPE_BF16;
  else if (std::strcmp(s, "f16") == 0) *out = SR_DTYPE_F16;
  else if (std::strcmp(s, "f32") == 0) *out = SR_DTYPE_F32;
  else if (std::strcmp(s, "fp8") == 0 || std::strcmp(s, "fp8_e4m3") == 0) *out = SR_DTYPE_FP8_E4M3;
  else return false;
  return true;
}

bool parse_int(const char* s, int64_t low, int64_t high, int64_t* out) {
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (!end || *end != '\0' || v < low || v > high) return false;
  *out = v;
  return true;
}

bool parse_float(const char* s, float* out) {
  char* end = nullptr;
  float v = std::strtof(s, &end);
  if (!end || *end != '\0' || !(v > 0.f)) return false;
  *out = v;
  return true;
}

}  // namespace

bool parse_demo_options(int argc, char** argv, DemoOptions* o, int* status) {
  for (int i = 1; i < argc; ++i) {
    const char* flag = argv[i];
    if (std::strcmp(flag, "--help") == 0 || std::strcmp(flag, "-h") == 0) {
      std::fputs(kUsage, stdout);
      *status = 0;
      return false;
    }
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    int64_t n = 0;
    bool ok = value != nullptr;
    if (ok && std::strcmp(flag, "--backend") == 0) ok = parse_backend(value, &o->backend);
    else if (ok && std::strcmp(flag, "--context") == 0) ok = parse_int(value, 1, INT64_C(1) << 24, &o->context);
    else if (ok && std::strcmp(flag, "--kv-heads") == 0) ok = parse_int(value, 1, 128, &n) && (o->kv_heads = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--group") == 0) ok = parse_int(value, 1, 64, &n) && (o->group = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--head-dim") == 0) ok = parse_int(value, 1, 1024, &n) && (o->head_dim = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--page") == 0) ok = parse_int(value, 1, 1024, &n) && (o->page_tokens = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--dtype") == 0) ok = parse_dtype(value, &o->dtype);
    else if (ok && std::strcmp(flag, "--tau") == 0) ok = parse_float(value, &o->tau);
    else if (ok && std::strcmp(flag, "--budget") == 0) ok = parse_float(value, &o->budget);
    else if (ok && std::strcmp(flag, "--route-from") == 0) ok = parse_int(value, -1, INT64_MAX, &o->route_from);
    else if (ok && std::strcmp(flag, "--steps") == 0) ok = parse_int(value, 1, 1000, &n) && (o->steps = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--threads") == 0) ok = parse_int(value, 0, 4096, &n) && (o->threads = static_cast<int32_t>(n), true);
    else if (ok && std::strcmp(flag, "--seed") == 0) ok = parse_int(value, 0, INT64_MAX, &n) && (o->seed = static_cast<uint64_t>(n), true);
    else if (ok && std::strcmp(flag, "--mix") == 0) {
      ok = std::strcmp(value, "sink-heavy") == 0 || std::strcmp(value, "mixed") == 0;
      o->sink_heavy = std::strcmp(value, "sink-heavy") == 0;
    } else {
      std::fprintf(stderr, "unknown flag or missing value: %s\n%s", flag, kUsage);
      *status = 2;
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s: %s\n%s", flag, value, kUsage);
      *status = 2;
      return false;
    }
    ++i;
  }
  return true;
}
