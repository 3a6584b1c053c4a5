// The main demo: a long synthetic context with sink structure in a SinkRouter cache, decoded
// dense, with tau routing and with an error budget. For each step it prints the latency, the
// fraction of V blocks skipped, the certified error bound and the error measured against the
// dense output.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "device_buffers.h"
#include "options.h"
#include "reference.h"
#include "sinkrouter/sinkrouter.h"
#include "synthetic_context.h"

namespace {

bool check(sr_status status, const char* what) {
  if (status == SR_OK) return true;
  std::fprintf(stderr, "%s failed: %s: %s\n", what, sr_status_string(status), sr_last_error());
  return false;
}

const char* dtype_name(sr_dtype dtype) {
  switch (dtype) {
    case SR_DTYPE_F32: return "f32";
    case SR_DTYPE_F16: return "f16";
    case SR_DTYPE_BF16: return "bf16";
    case SR_DTYPE_FP8_E4M3: return "fp8_e4m3";
    default: return "?";
  }
}

struct StepResult {
  double ms = 0, skipped = 0, max_bound = 0, max_error = 0;
  int64_t recomputed = 0;
};

}  // namespace

int main(int argc, char** argv) {
  DemoOptions o;
  int status = 0;
  if (!parse_demo_options(argc, argv, &o, &status)) return status;

  sr_context_options co;
  sr_context_options_default(&co, sizeof co);
  co.backend = o.backend;
  co.num_threads = o.threads;
  sr_context* ctx = nullptr;
  if (!check(sr_context_create(&co, &ctx), "creating the context")) return 1;
  const char* device = "";
  sr_context_device_name(ctx, &device);
  sr_backend backend = SR_BACKEND_CPU;
  sr_context_backend(ctx, &backend);

  sr_kv_cache_options ko;
  sr_kv_cache_options_default(&ko, sizeof ko);
  ko.num_layers = 1;
  ko.num_kv_heads = o.kv_heads;
  ko.head_dim = o.head_dim;
  ko.page_tokens = o.page_tokens;
  ko.capacity_tokens = o.context;
  ko.dtype = o.dtype;
  ko.max_q_heads = o.kv_heads * o.group;
  sr_kv_cache* cache = nullptr;
  if (!check(sr_kv_cache_create(ctx, &ko, &cache), "creating the cache")) return 1;

  sr::workloads::ContextSpec spec = o.sink_heavy ? sr::workloads::sink_heavy_spec(o.context, o.seed)
                                                 : sr::workloads::mixed_spec(o.context, o.seed);
  spec.kv_heads = o.kv_heads;
  spec.group = o.group;
  spec.head_dim = o.head_dim;
  sr::workloads::SyntheticContext generator(spec);

  std::printf("SinkRouter %s demo on %s\n", sr_version(), device);
  std::printf("context %lld tokens, %d kv-heads x %d q-heads each, head_dim %d, %d-token pages, %s cache\n",
              static_cast<long long>(o.context), o.kv_heads, o.group, o.head_dim, o.page_tokens,
              dtype_name(o.dtype));
  std::printf("heads (%s mix):", o.sink_heavy ? "sink-heavy" : "mixed");
  for (int32_t h = 0; h < o.kv_heads; ++h) std::printf(" %s", sr::workloads::head_kind_name(generator.kind(h)));
  std::printf("\n");

  // Fill the cache in chunks, converting f32 rows to the cache's dtype on the way in. The io names
  // the buffers' dtype: an FP8 cache refuses "the cache's own" (a NULL io).
  auto fill_start = std::chrono::steady_clock::now();
  sr_seq_id seq = 0;
  if (!check(sr_seq_add(cache, &seq), "adding a sequence")) return 1;
  const int64_t chunk = 8192;
  std::vector<float> k(static_cast<size_t>(chunk) * o.kv_heads * o.head_dim), v(k.size());
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.dtype = SR_DTYPE_F32;
  for (int64_t t = 0; t < o.context; t += chunk) {
    int64_t n = std::min(chunk, o.context - t);
    generator.tokens(t, n, k.data(), v.data());
    if (!check(sr_kv_append(cache, seq, 0, n, k.data(), v.data(), &io), "appending")) return 1;
  }
  double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count();
  const double rows_of_k_and_v = 2.0 * o.context * o.kv_heads;
  const double element_bytes = rows_of_k_and_v * o.head_dim * sr_dtype_size(o.dtype);
  // FP8 keeps one f32 scale per row (token and kv-head) of K and of V besides its elements.
  const double scale_bytes = o.dtype == SR_DTYPE_FP8_E4M3 ? rows_of_k_and_v * sizeof(float) : 0.0;
  if (scale_bytes > 0) {
    std::printf("cache filled in %.2f s (%.1f MB of K and V: %.1f MB of elements + %.2f MB of scales)\n\n", fill_s,
                (element_bytes + scale_bytes) / 1e6, element_bytes / 1e6, scale_bytes / 1e6);
  } else {
    std::printf("cache filled in %.2f s (%.1f MB of K and V)\n\n", fill_s, element_bytes / 1e6);
  }

  const int32_t q_heads = o.kv_heads * o.group;
  const size_t rows = static_cast<size_t>(q_heads);
  std::vector<sr_seq_id> seqs = {seq};
  std::vector<float> dense(rows * o.head_dim), out(dense.size()), bound(rows);

  struct Mode {
    const char* name;
    sr_routing_mode routing;
  };
  const Mode modes[] = {{"dense", SR_ROUTING_OFF}, {"tau", SR_ROUTING_TAU}, {"budget", SR_ROUTING_BUDGET}};
  std::printf("%-5s %-24s %10s %12s %14s %14s %10s\n", "step", "mode", "ms", "V skipped", "error bound",
              "error vs dense", "recomputed");
  bool all_within_bound = true;
  for (int32_t step = 0; step < o.steps; ++step) {
    std::vector<float> q = generator.query(step);
    for (const Mode& mode : modes) {
      sr_decode_args a;
      sr_decode_args_default(&a, sizeof a);
      a.batch = 1;
      a.seq_ids = seqs.data();
      a.num_q_heads = q_heads;
      a.q = q.data();
      a.out = mode.routing == SR_ROUTING_OFF ? dense.data() : out.data();
      a.routing = mode.routing;
      a.tau = o.tau;
      a.error_budget = mode.routing == SR_ROUTING_BUDGET ? o.budget : 0.f;
      a.route_from_tokens = o.route_from;
      a.head_error_bound = bound.data();
      a.collect_stats = 1;
      sr_context_reset_stats(ctx);
      auto start = std::chrono::steady_clock::now();
      if (!check(sr::workloads::decode_with_host_buffers(ctx, cache, a, o.head_dim), "decode")) return 1;
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      sr_decode_stats stats;
      sr_context_stats(ctx, &stats, sizeof stats);
      double max_error = 0, max_bound = 0;
      if (mode.routing != SR_ROUTING_OFF) {
        for (size_t h = 0; h < rows; ++h) {
          std::vector<double> ref(dense.begin() + h * o.head_dim, dense.begin() + (h + 1) * o.head_dim);
          double e = sr::workloads::relative_error(out.data() + h * o.head_dim, ref.data(), o.head_dim);
          max_error = std::max(max_error, e);
          max_bound = std::max(max_bound, static_cast<double>(bound[h]));
          // The dense output itself carries f32 rounding (~1e-6): allow that much.
          if (e > bound[h] + 1e-5) all_within_bound = false;
        }
      }
      char label[64];
      if (mode.routing == SR_ROUTING_TAU) std::snprintf(label, sizeof label, "tau %.3g", o.tau);
      else if (mode.routing == SR_ROUTING_BUDGET) std::snprintf(label, sizeof label, "budget %.0e", o.budget);
      else std::snprintf(label, sizeof label, "dense (exact)");
      // A routed step shorter than route_from_tokens ran dense.
      if (stats.steps_run_dense > 0) std::strncat(label, ", ran dense", sizeof label - std::strlen(label) - 1);
      double skipped = stats.blocks_total ? 100.0 * stats.blocks_v_skipped / stats.blocks_total : 0.0;
      std::printf("%-5d %-24s %10.3f %11.1f%% %14.2e %14.2e %10lld\n", step, label, ms, skipped, max_bound, max_error,
                  static_cast<long long>(stats.heads_recomputed));
    }
  }
  std::printf("\n%s\n", all_within_bound ? "every head's measured error is within its certified bound"
                                         : "ERROR: a head's measured error exceeded its certified bound");
  sr_kv_cache_destroy(cache);
  sr_context_destroy(ctx);
  return all_within_bound ? 0 : 1;
}
