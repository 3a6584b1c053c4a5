// CPU benchmark: dense and routed decode of a Llama-3.1-8B layer (32 q-heads, 8 kv-heads,
// head_dim 128, bf16 and FP8 E4M3 caches) at several context lengths, beside the machine's memory-read
// bandwidth measured in the same run, so every figure is also a ratio to the roofline.
//
// Counters: KV_GBps = dense K+V bytes / time (what a dense kernel would need to read, of the
// attended tokens: a window's; FP8 counts its codes and its per-row scales);
// read_GBps = bytes actually read (K, and V of the blocks not skipped) / time;
// pct_of_read_bw = read_GBps / measured bandwidth; V_skipped = fraction of V blocks skipped;
// recomputed = fraction of heads the budget's exact follow-up decoded again.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include "memory_bandwidth.h"
#include "sinkrouter/sinkrouter.h"
#include "synthetic_context.h"

namespace {

constexpr int32_t kKvHeads = 8, kQHeads = 32, kHeadDim = 128;
double g_read_bandwidth = 0;  // bytes per second, measured at start
int32_t g_threads = 0;

struct Layer {
  sr_context* ctx = nullptr;
  sr_kv_cache* cache = nullptr;
  sr_seq_id seq = 0;
  std::vector<float> q;
  ~Layer() {
    sr_kv_cache_destroy(cache);
    sr_context_destroy(ctx);
  }
};

void die(sr_status s, const char* what) {
  if (s == SR_OK) return;
  std::fprintf(stderr, "%s: %s: %s\n", what, sr_status_string(s), sr_last_error());
  std::exit(1);
}

// Bytes of one token's K (or V) of one kv-head in a cache of `dtype`.
double row_bytes(sr_dtype dtype) {
  return kHeadDim * static_cast<double>(sr_dtype_size(dtype)) + (dtype == SR_DTYPE_FP8_E4M3 ? sizeof(float) : 0);
}

// One cache per (context length, data kind, dtype), built on first use and kept for the run.
Layer& layer_for(int64_t length, bool sink_heavy, sr_dtype dtype) {
  static std::map<std::tuple<int64_t, bool, int>, std::unique_ptr<Layer>> layers;
  auto& slot = layers[{length, sink_heavy, static_cast<int>(dtype)}];
  if (slot) return *slot;
  slot = std::make_unique<Layer>();
  Layer& L = *slot;
  sr_context_options co;
  sr_context_options_default(&co, sizeof co);
  co.backend = SR_BACKEND_CPU;
  co.num_threads = g_threads;
  die(sr_context_create(&co, &L.ctx), "context");
  sr_kv_cache_options ko;
  sr_kv_cache_options_default(&ko, sizeof ko);
  ko.num_layers = 1;
  ko.num_kv_heads = kKvHeads;
  ko.head_dim = kHeadDim;
  ko.capacity_tokens = length;
  ko.dtype = dtype;
  die(sr_kv_cache_create(L.ctx, &ko, &L.cache), "cache");
  die(sr_seq_add(L.cache, &L.seq), "sequence");
  auto spec = sink_heavy ? sr::workloads::sink_heavy_spec(length, 7) : sr::workloads::mixed_spec(length, 7);
  sr::workloads::SyntheticContext gen(spec);
  const int64_t chunk = 8192;
  std::vector<float> k(static_cast<size_t>(chunk) * kKvHeads * kHeadDim), v(k.size());
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.dtype = SR_DTYPE_F32;
  for (int64_t t = 0; t < length; t += chunk) {
    int64_t n = std::min(chunk, length - t);
    gen.tokens(t, n, k.data(), v.data());
    die(sr_kv_append(L.cache, L.seq, 0, n, k.data(), v.data(), &io), "append");
  }
  L.q = gen.query();
  return L;
}

// The attention variants run dense: a 4096-token sliding window (its bytes are all it reads),
// and learned sinks with lse out (beside plain dense, they should cost nothing measurable).
enum Mode { kDense, kTau10, kBudget1e3, kBudget1e2, kWindow4096, kSinksLse };
const char* mode_name(int m) {
  const char* names[] = {"dense", "tau10", "budget1e-3", "budget1e-2", "dense window4096", "dense sinks+lse"};
  return names[m];
}
constexpr int32_t kWindowTokens = 4096;

void BM_Decode(benchmark::State& state) {
  const int64_t length = state.range(0);
  const int mode = static_cast<int>(state.range(1));
  const bool sink_heavy = state.range(2) != 0;
  const sr_dtype dtype = static_cast<sr_dtype>(state.range(3));
  Layer& L = layer_for(length, sink_heavy, dtype);
  std::vector<float> out(L.q.size());
  sr_decode_args a;
  sr_decode_args_default(&a, sizeof a);
  a.batch = 1;
  a.seq_ids = &L.seq;
  a.num_q_heads = kQHeads;
  a.q = L.q.data();
  a.out = out.data();
  a.routing = mode == kTau10 ? SR_ROUTING_TAU : mode == kBudget1e3 || mode == kBudget1e2 ? SR_ROUTING_BUDGET : SR_ROUTING_OFF;
  a.tau = 10.f;
  a.error_budget = mode == kBudget1e3 ? 1e-3f : mode == kBudget1e2 ? 1e-2f : 0.f;
  std::vector<float> sinks(kQHeads, 2.f), lse(kQHeads);
  if (mode == kWindow4096) a.window_left = kWindowTokens - 1;
  if (mode == kSinksLse) {
    a.sink_logits = sinks.data();
    a.lse = lse.data();
  }
  a.collect_stats = 1;
  sr_context_reset_stats(L.ctx);
  for (auto _ : state) {
    die(sr_decode_step(L.ctx, L.cache, &a), "decode");
    benchmark::DoNotOptimize(out.data());
  }
  sr_decode_stats s;
  sr_context_stats(L.ctx, &s, sizeof s);
  const int64_t attended = mode == kWindow4096 ? std::min<int64_t>(length, kWindowTokens) : length;
  const double half = static_cast<double>(attended) * kKvHeads * row_bytes(dtype);  // K or V bytes read dense
  const double skipped = s.blocks_total ? static_cast<double>(s.blocks_v_skipped) / s.blocks_total : 0.0;
  const double read = half + half * (1.0 - skipped);
  const double steps = static_cast<double>(state.iterations());
  state.counters["KV_GBps"] = benchmark::Counter(2 * half * steps / 1e9, benchmark::Counter::kIsRate);
  state.counters["read_GBps"] = benchmark::Counter(read * steps / 1e9, benchmark::Counter::kIsRate);
  state.counters["pct_of_read_bw"] =
      benchmark::Counter(100.0 * read * steps / g_read_bandwidth, benchmark::Counter::kIsRate);
  state.counters["V_skipped"] = skipped;
  state.counters["max_bound"] = s.max_error_bound;
  // Heads whose certified bound passed the budget and were decoded again, exactly.
  state.counters["recomputed"] = s.heads ? static_cast<double>(s.heads_recomputed) / s.heads : 0.0;
  state.SetLabel(std::string(dtype == SR_DTYPE_FP8_E4M3 ? "fp8 " : "bf16 ") + mode_name(mode) +
                 (sink_heavy ? " sink-heavy" : " mixed"));
}

void BM_MemoryRead(benchmark::State& state) {
  for (auto _ : state) {
    double bw = measure_read_bandwidth(size_t{1} << 30, g_threads, 1);
    state.SetIterationTime((size_t{1} << 30) / bw);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (int64_t{1} << 30));
  state.SetLabel("all threads, 1 GiB");
}

}  // namespace

int main(int argc, char** argv) {
  // Our flag: --threads=N (default: all cores), removed before Google Benchmark parses.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) g_threads = std::atoi(argv[i] + 10);
    else rest.push_back(argv[i]);
  }
  if (g_threads <= 0) g_threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  int rest_count = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_count, rest.data());
  g_read_bandwidth = measure_read_bandwidth(size_t{1} << 30, g_threads, 5);
  std::printf("memory-read bandwidth (%d threads, best of 5 passes over 1 GiB): %.1f GB/s\n", g_threads,
              g_read_bandwidth / 1e9);
  benchmark::RegisterBenchmark("MemoryRead", BM_MemoryRead)->UseManualTime()->Unit(benchmark::kMillisecond);
  for (int64_t length : {4096, 32768, 131072}) {
    for (int dtype : {SR_DTYPE_BF16, SR_DTYPE_FP8_E4M3}) {
    for (int mode : {kDense, kTau10, kBudget1e3, kBudget1e2, kWindow4096, kSinksLse}) {
      for (int sink_heavy : {1, 0}) {
        if (mode == kDense && !sink_heavy) continue;  // dense reads the same bytes on any data
        if (dtype == SR_DTYPE_FP8_E4M3 && (mode == kBudget1e3 || !sink_heavy)) continue;  // the rows that compare
        if (mode >= kWindow4096 && (!sink_heavy || dtype != SR_DTYPE_BF16)) continue;
        benchmark::RegisterBenchmark("Decode", BM_Decode)
            ->Args({length, mode, sink_heavy, dtype})
            ->ArgNames({"context", "mode", "sink", "dtype"})
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()  // the work runs on the context's threads, not this one
            ->MinTime(0.5);
      }
    }
    }
  }
  {  // The backend's own name for what runs: its threads and the kernel's instruction set.
    sr_context_options co;
    sr_context_options_default(&co, sizeof co);
    co.backend = SR_BACKEND_CPU;
    co.num_threads = g_threads;
    sr_context* ctx = nullptr;
    const char* device = nullptr;
    die(sr_context_create(&co, &ctx), "context");
    die(sr_context_device_name(ctx, &device), "device name");
    std::printf("device: %s\n", device);
    benchmark::AddCustomContext("device", device);
    sr_context_destroy(ctx);
  }
  benchmark::AddCustomContext("threads", std::to_string(g_threads));
  benchmark::AddCustomContext("read_bandwidth_GBps", std::to_string(g_read_bandwidth / 1e9));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
