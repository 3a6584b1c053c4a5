#include "tuning.h"

#include <cstdlib>
#include <mutex>

namespace sr::gpu {
namespace {

// The variable `name` as an integer, where it is set to a number >= least.
bool read_knob(const char* name, int64_t least, int64_t* value) {
  const char* text = std::getenv(name);
  if (!text || !*text) return false;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (*end != '\0' || v < least) return false;
  *value = v;
  return true;
}

std::mutex override_mutex;
bool has_override = false;
Tuning override_tuning;

}  // namespace

Tuning tuning_from_environment() {
  Tuning t;
  int64_t v = 0;
  if (read_knob("SINKROUTER_CUDA_MIN_SPLIT", 1, &v)) t.min_split_tokens = static_cast<int32_t>(v);
  if (read_knob("SINKROUTER_CUDA_PREFETCH_ROWS", 0, &v)) t.prefetch_rows = static_cast<int32_t>(v);
  if (read_knob("SINKROUTER_CUDA_DENSE_STREAM", 0, &v)) t.stream_dense = v != 0;
  if (read_knob("SINKROUTER_CUDA_TAU_STREAM_FROM", 0, &v)) t.tau_stream_from = v;
  if (read_knob("SINKROUTER_CUDA_WAVE_BLOCKS", 0, &v)) t.wave_blocks = static_cast<int32_t>(v);
  if (read_knob("SINKROUTER_CUDA_ADAPTIVE_SPLITS", 0, &v)) t.adaptive_splits = v != 0;
  if (read_knob("SINKROUTER_CUDA_BLOCKS_PER_SM", 0, &v) && (v == 3 || v == 4)) t.blocks_per_sm = static_cast<int32_t>(v);
  if (read_knob("SINKROUTER_CUDA_PDL", 0, &v)) t.programmatic_launch = v != 0;
  if (read_knob("SINKROUTER_CUDA_SPECTRAL_NODES", 0, &v) && v <= 2) t.spectral_nodes = static_cast<int32_t>(v);
  if (read_knob("SINKROUTER_CUDA_PAGE_SIGMA", 0, &v)) t.page_sigma = v != 0;
  if (read_knob("SINKROUTER_CUDA_COMPENSATION", 0, &v)) t.compensate = v != 0;
  return t;
}

Tuning tuning_for_new_device() {
  std::lock_guard<std::mutex> lock(override_mutex);
  return has_override ? override_tuning : tuning_from_environment();
}

}  // namespace sr::gpu

extern "C" void sr_backend_set_tuning(const sr::gpu::Tuning* tuning) {
  std::lock_guard<std::mutex> lock(sr::gpu::override_mutex);
  sr::gpu::has_override = tuning != nullptr;
  if (tuning) sr::gpu::override_tuning = *tuning;
}
