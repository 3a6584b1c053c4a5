// GPU benchmark of our decode on the Llama-3.1-8B layer (32 q-heads, 8 kv-heads, head_dim 128,
// bf16 cache, and FP8 E4M3 caches filled from the same bf16 values): dense, tau 12, budget 1e-3
// and 1e-2 (FP8: dense, tau 12, budget 1e-2), on sink-heavy, mixed and real data, per
// call (events around one synchronised call) and pipelined (a CUDA graph of steps rotating
// over enough caches to defeat the L2, replayed; total time over the steps). The attention
// variants at 1x128K: a 4096-token window (its bytes are the row's KV bytes), learned sinks
// with lse out (against plain dense), and sr_merge_attention_states over 8 shards' states (rows
// of data "merge8", length 0). One CSV row per (data, shape, method) on stdout. The peers
// (SDPA, copy ceiling) run in peers.py.
//
//   sr_gpu_bench [--quick] [--realattn DIR] [--only DATA:BATCH:LENGTH:METHOD[+METHOD...]] [--page-tokens N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "shared_arithmetic/dtype_convert.h"
#include "per_call_timing.h"
#include "realattn.h"
#include "reference.h"
#include "sinkrouter/sinkrouter.h"
#include "synthetic_context.h"

namespace {

constexpr int32_t kKvHeads = 8, kGroup = 4, kQHeads = 32, kDim = 128;
// Tokens per cache page: 16 (the tau stream's pages), or --page-tokens N to see what the paged
// layout costs the dense path (a (page, kv-head) block of K is page_tokens * 256 contiguous bytes).
int32_t g_page_tokens = 16;
constexpr double kL2DefeatBytes = 200e6;  // rotate over caches until this much is in play

void die(const char* what, const char* detail) {
  std::fprintf(stderr, "sr_gpu_bench: %s: %s\n", what, detail);
  std::exit(1);
}
void check(sr_status s, const char* what) {
  if (s != SR_OK) die(what, sr_last_error());
}
void check(cudaError_t s, const char* what) {
  if (s != cudaSuccess) die(what, cudaGetErrorString(s));
}

// One sequence's K and V, [N][kv_heads][dim], as the bf16 the cache stores and as f32.
struct HostContext {
  int64_t length = 0;
  std::vector<uint16_t> k16, v16;
  std::vector<float> q;  // [32][128]
};

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  int64_t per = (n + threads - 1) / threads;
  for (int i = 0; i < threads; ++i) {
    int64_t b = i * per, e = std::min(n, b + per);
    if (b < e) pool.emplace_back(body, b, e);
  }
  for (auto& t : pool) t.join();
}

HostContext synthetic(bool sink_heavy, int64_t length) {
  auto spec = sink_heavy ? sr::workloads::sink_heavy_spec(length, 7) : sr::workloads::mixed_spec(length, 7);
  spec.kv_heads = kKvHeads;
  spec.group = kGroup;
  spec.head_dim = kDim;
  sr::workloads::SyntheticContext gen(spec);
  HostContext c;
  c.length = length;
  const int64_t row = kKvHeads * kDim;
  c.k16.resize(length * row);
  c.v16.resize(length * row);
  parallel_for(length, [&](int64_t b, int64_t e) {
    const int64_t chunk = 256;
    std::vector<float> k(chunk * row), v(chunk * row);
    for (int64_t t = b; t < e; t += chunk) {
      int64_t n = std::min(chunk, e - t);
      gen.tokens(t, n, k.data(), v.data());
      for (int64_t i = 0; i < n * row; ++i) {
        c.k16[t * row + i] = sr::float_to_bf16(k[i]);
        c.v16[t * row + i] = sr::float_to_bf16(v[i]);
      }
    }
  });
  c.q = gen.query();
  return c;
}

// Real attention (4096 tokens): kv-head j of the benchmark layer is kv-head 0 of captured
// layer j; its group of 4 q-heads repeats that layer's two q-heads of kv-head 0 (query 31,
// which sees all 4096 tokens).
HostContext real(const std::string& dir) {
  using sr::workloads::RealAttnLayer;
  HostContext c;
  c.length = RealAttnLayer::kTokens;
  const int64_t row = kKvHeads * kDim;
  c.k16.resize(c.length * row);
  c.v16.resize(c.length * row);
  c.q.resize(kQHeads * kDim);
  for (int32_t j = 0; j < kKvHeads; ++j) {
    RealAttnLayer layer = sr::workloads::load_realattn_layer(dir, j);
    for (int64_t t = 0; t < c.length; ++t) {
      std::memcpy(&c.k16[t * row + j * kDim], &layer.k[t * kDim], kDim * 2);
      std::memcpy(&c.v16[t * row + j * kDim], &layer.v[t * kDim], kDim * 2);
    }
    for (int32_t g = 0; g < kGroup; ++g) {
      const uint16_t* src = &layer.q[((RealAttnLayer::kQueries - 1) * RealAttnLayer::kQHeads + g % 2) * kDim];
      for (int d = 0; d < kDim; ++d) c.q[(j * kGroup + g) * kDim + d] = sr::bf16_to_float(src[d]);
    }
  }
  return c;
}

struct Method {
  const char* name;
  sr_routing_mode routing;
  float tau, budget;
  int64_t route_from_tokens = 0;  // 0: the routed kernels at every length; -1: the backend's policy
  sr_dtype cache_dtype = SR_DTYPE_BF16;
  int32_t window_left = -1;  // the attention variants (variant_methods)
  bool sinks = false;        // learned sink logits (kSinkLogit for every head) and lse out
};

constexpr float kSinkLogit = 2.f;  // about the sink-heavy data's largest logits: the sink takes a share

// K+V bytes of one token of one kv-head in a cache of `dtype` (FP8: codes and two row scales).
double token_bytes(sr_dtype dtype) {
  return 2.0 * (kDim * static_cast<double>(sr_dtype_size(dtype)) + (dtype == SR_DTYPE_FP8_E4M3 ? 4 : 0));
}

struct Row {
  std::string data, method;
  int32_t batch;
  int64_t length;
  double per_call_us, pipelined_us, kv_bytes, bytes_read, skip_fraction, max_bound, true_error;
  int64_t heads_recomputed, heads;
  double host_us;  // of a call, the time sr_decode_step takes on the host
  double median_bound_over_error;  // over the heads that skipped something (NaN: no reference or none)
};

// A CUDA context on a new non-blocking stream (both the caller's to destroy).
sr_context* cuda_context(cudaStream_t* stream) {
  check(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking), "stream");
  sr_context_options co;
  sr_context_options_default(&co, sizeof co);
  co.backend = SR_BACKEND_CUDA;
  co.stream = *stream;
  sr_context* ctx = nullptr;
  check(sr_context_create(&co, &ctx), "context");
  return ctx;
}

// The methods of one cache dtype and window (all of `methods` must share them). A window's row
// counts the window's bytes as its KV bytes, and rotates over enough caches that its windows
// are not held in the L2.
std::vector<Row> run_case(const std::string& data_name, const HostContext& host, int32_t batch,
                          const std::vector<Method>& methods, bool reference) {
  if (methods.empty()) return {};
  const sr_dtype dtype = methods[0].cache_dtype;
  const int32_t window_left = methods[0].window_left;
  const int64_t N = host.length;
  const int64_t attended = window_left >= 0 ? std::min<int64_t>(N, window_left + 1) : N;
  const double kv_bytes = static_cast<double>(batch) * attended * kKvHeads * token_bytes(dtype);
  const int rotation = static_cast<int>(std::clamp(std::ceil(kL2DefeatBytes / kv_bytes), 1.0, 16.0));
  cudaStream_t stream;
  sr_context* ctx = cuda_context(&stream);

  std::vector<sr_kv_cache*> caches(rotation);
  std::vector<std::vector<sr_seq_id>> seqs(rotation);
  for (int r = 0; r < rotation; ++r) {
    sr_kv_cache_options o;
    sr_kv_cache_options_default(&o, sizeof o);
    o.num_layers = 1;
    o.num_kv_heads = kKvHeads;
    o.head_dim = kDim;
    o.page_tokens = g_page_tokens;
    o.capacity_tokens = batch * (N + g_page_tokens);
    o.dtype = dtype;
    o.max_batch = batch;
    o.max_q_heads = kQHeads;
    check(sr_kv_cache_create(ctx, &o, &caches[r]), "cache");
    for (int32_t b = 0; b < batch; ++b) {
      sr_seq_id s;
      check(sr_seq_add(caches[r], &s), "seq_add");
      sr_kv_io io;
      sr_kv_io_default(&io, sizeof io);
      io.dtype = SR_DTYPE_BF16;
      check(sr_kv_append(caches[r], s, 0, N, host.k16.data(), host.v16.data(), &io), "append");
      seqs[r].push_back(s);
    }
  }
  const size_t q_elems = static_cast<size_t>(batch) * kQHeads * kDim;
  std::vector<float> q(q_elems);
  for (int32_t b = 0; b < batch; ++b) std::copy(host.q.begin(), host.q.end(), q.begin() + b * kQHeads * kDim);
  float *dq, *dout, *dbound, *dmass, *dsinks, *dlse;
  check(cudaMalloc(&dsinks, kQHeads * 4), "malloc");
  check(cudaMalloc(&dlse, batch * kQHeads * 4), "malloc");
  {
    const std::vector<float> sinks(kQHeads, kSinkLogit);
    check(cudaMemcpy(dsinks, sinks.data(), kQHeads * 4, cudaMemcpyHostToDevice), "sinks");
  }
  check(cudaMalloc(&dq, q_elems * 4), "malloc");
  check(cudaMalloc(&dout, q_elems * 4), "malloc");
  check(cudaMalloc(&dbound, batch * kQHeads * 4), "malloc");
  check(cudaMalloc(&dmass, batch * kQHeads * 4), "malloc");
  check(cudaMemcpy(dq, q.data(), q_elems * 4, cudaMemcpyHostToDevice), "q");

  // Float64 reference of batch entry 0 over the stored values (FP8: read back dequantized), one
  // per variant of the methods.
  std::vector<float> ref_k, ref_v;
  if (reference) {
    const int64_t row = kKvHeads * kDim;
    std::vector<float> k(N * row), v(N * row);
    if (dtype == SR_DTYPE_FP8_E4M3) {
      sr_kv_io io;
      sr_kv_io_default(&io, sizeof io);
      io.dtype = SR_DTYPE_F32;
      check(sr_kv_read(caches[0], seqs[0][0], 0, 0, N, k.data(), v.data(), &io), "read back");
    } else {
      parallel_for(N * row, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          k[i] = sr::bf16_to_float(host.k16[i]);
          v[i] = sr::bf16_to_float(host.v16[i]);
        }
      });
    }
    ref_k = std::move(k);
    ref_v = std::move(v);
  }
  auto reference_of = [&](const Method& m) {
    std::vector<double> ref(kQHeads * kDim);
    sr::workloads::AttentionVariant variant;
    variant.window_left = m.window_left;
    variant.sink_logit = m.sinks ? kSinkLogit : -INFINITY;
    parallel_for(kQHeads, [&](int64_t b, int64_t e) {
      for (int64_t h = b; h < e; ++h) {
        const int64_t kvh = h / kGroup;
        auto o = sr::workloads::reference_attention_variant(&q[h * kDim], ref_k.data() + kvh * kDim,
                                                            ref_v.data() + kvh * kDim, N, kDim, kKvHeads * kDim,
                                                            1.0 / std::sqrt(128.0), variant);
        std::copy(o.out.begin(), o.out.end(), ref.begin() + h * kDim);
      }
    });
    return ref;
  };

  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  std::vector<Row> rows;
  for (const Method& m : methods) {
    auto args_for = [&](int r, bool extras) {
      sr_decode_args a;
      sr_decode_args_default(&a, sizeof a);
      a.layer = 0;
      a.batch = batch;
      a.seq_ids = seqs[r].data();
      a.num_q_heads = kQHeads;
      a.q = dq;
      a.out = dout;
      a.routing = m.routing;
      a.tau = m.tau;
      a.error_budget = m.budget;
      a.route_from_tokens = m.route_from_tokens;
      a.stream = stream;
      a.window_left = m.window_left;
      if (m.sinks) {
        a.sink_logits = dsinks;
        a.lse = dlse;
      }
      if (extras) {
        a.head_error_bound = dbound;
        a.head_skipped_mass = dmass;
        a.collect_stats = 1;
      }
      return a;
    };
    Row row{data_name, m.name, batch, N, 0, 0, kv_bytes, 0, 0, 0, NAN, 0, 0, 0, NAN};
    // Statistics and accuracy from one step on cache 0.
    check(sr_context_reset_stats(ctx), "reset");
    sr_decode_args a = args_for(0, true);
    check(sr_decode_step(ctx, caches[0], &a), "decode");
    sr_decode_stats st;
    check(sr_context_stats(ctx, &st, sizeof st), "stats");
    row.skip_fraction = st.blocks_total ? static_cast<double>(st.blocks_v_skipped) / st.blocks_total : 0.0;
    row.max_bound = st.max_error_bound;
    row.heads_recomputed = st.heads_recomputed;
    row.heads = st.heads;
    double recomputed = st.heads ? static_cast<double>(st.heads_recomputed) / st.heads : 0.0;
    row.bytes_read = kv_bytes / 2 * (2.0 - row.skip_fraction) + recomputed * kv_bytes;
    if (reference) {
      const std::vector<double> ref = reference_of(m);
      std::vector<float> out(kQHeads * kDim);
      check(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost), "out");
      std::vector<float> bound(kQHeads);
      check(cudaMemcpy(bound.data(), dbound, bound.size() * 4, cudaMemcpyDeviceToHost), "bound");
      double worst = 0.0;
      std::vector<double> ratios;  // how far each head's certified bound sits above its true error
      for (int h = 0; h < kQHeads; ++h) {
        const double error = sr::workloads::relative_error(out.data() + h * kDim, ref.data() + h * kDim, kDim);
        worst = std::max(worst, error);
        if (bound[h] > 0.f && error > 0.0) ratios.push_back(bound[h] / error);
      }
      row.true_error = worst;
      if (!ratios.empty()) row.median_bound_over_error = sr::bench::median(ratios);
    }
    // Per call: one synchronised call at a time, rotating caches.
    check(sr::bench::per_call_us(
              stream,
              [&](int i) {
                sr_decode_args c = args_for(i % rotation, false);
                check(sr_decode_step(ctx, caches[i % rotation], &c), "decode");
              },
              &row.per_call_us, &row.host_us),
          "per-call timing");
    // Pipelined: a graph of steps over the rotation, replayed.
    const int steps = std::max(rotation, 16) / rotation * rotation;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
    for (int i = 0; i < steps; ++i) {
      sr_decode_args c = args_for(i % rotation, false);
      check(sr_decode_step(ctx, caches[i % rotation], &c), "decode (capture)");
    }
    check(cudaStreamEndCapture(stream, &graph), "end capture");
    check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    check(cudaGraphLaunch(exec, stream), "replay");
    check(cudaStreamSynchronize(stream), "sync");
    std::vector<double> per_step;
    const int reps = std::max(3, static_cast<int>(2e8 / (kv_bytes * steps)));
    for (int trial = 0; trial < 5; ++trial) {
      check(cudaEventRecord(e0, stream), "record");
      for (int r = 0; r < reps; ++r) check(cudaGraphLaunch(exec, stream), "replay");
      check(cudaEventRecord(e1, stream), "record");
      check(cudaEventSynchronize(e1), "sync");
      float ms;
      check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
      per_step.push_back(ms * 1e3 / (reps * steps));
    }
    row.pipelined_us = sr::bench::median(per_step);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    rows.push_back(row);
    std::fprintf(stderr, "  %-6s B=%-3d N=%-7lld %-12s per-call %8.1f us (host %.1f)  pipelined %8.1f us  skip %.3f bound %.2e err %.2e bound/err %.1f\n",
                 data_name.c_str(), batch, static_cast<long long>(N), m.name, row.per_call_us, row.host_us, row.pipelined_us,
                 row.skip_fraction, row.max_bound, row.true_error, row.median_bound_over_error);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(dq);
  cudaFree(dout);
  cudaFree(dbound);
  cudaFree(dmass);
  cudaFree(dsinks);
  cudaFree(dlse);
  for (sr_kv_cache* c : caches) sr_kv_cache_destroy(c);
  sr_context_destroy(ctx);
  cudaStreamDestroy(stream);
  return rows;
}

// sr_merge_attention_states of `shards` states (out f32, lse) per (batch entry, q-head), as an
// engine merges a sequence's shards: per call and pipelined (a graph of 16 merges), in
// device memory. One row: data "merge<shards>", length 0, the states' bytes as KV bytes.
Row run_merge(int32_t batch, int32_t shards) {
  cudaStream_t stream;
  sr_context* ctx = cuda_context(&stream);
  const size_t rows = static_cast<size_t>(batch) * kQHeads;
  std::vector<float> host_out(rows * kDim * shards), host_lse(rows * shards);
  for (size_t i = 0; i < host_out.size(); ++i) host_out[i] = std::sin(0.001f * static_cast<float>(i));
  for (size_t i = 0; i < host_lse.size(); ++i) host_lse[i] = 5.f + std::cos(0.01f * static_cast<float>(i));
  float *dout_states, *dlse_states, *dout, *dlse;
  check(cudaMalloc(&dout_states, host_out.size() * 4), "malloc");
  check(cudaMalloc(&dlse_states, host_lse.size() * 4), "malloc");
  check(cudaMalloc(&dout, rows * kDim * 4), "malloc");
  check(cudaMalloc(&dlse, rows * 4), "malloc");
  check(cudaMemcpy(dout_states, host_out.data(), host_out.size() * 4, cudaMemcpyHostToDevice), "states");
  check(cudaMemcpy(dlse_states, host_lse.data(), host_lse.size() * 4, cudaMemcpyHostToDevice), "lse");
  std::vector<const void*> outs(shards);
  std::vector<const float*> lses(shards);
  for (int32_t s = 0; s < shards; ++s) {
    outs[s] = dout_states + s * rows * kDim;
    lses[s] = dlse_states + s * rows;
  }
  auto merge = [&] {
    sr_merge_args m;
    sr_merge_args_default(&m, sizeof m);
    m.num_states = shards;
    m.rows = static_cast<int64_t>(rows);
    m.head_dim = kDim;
    m.state_outs = outs.data();
    m.state_lses = lses.data();
    m.out = dout;
    m.lse = dlse;
    m.stream = stream;
    check(sr_merge_attention_states(ctx, &m), "merge");
  };
  Row row{"merge" + std::to_string(shards), "merge", batch, 0, 0, 0, static_cast<double>(host_out.size() + host_lse.size()) * 4,
          0, 0, 0, NAN, 0, 0, 0, NAN};
  row.bytes_read = row.kv_bytes;
  check(sr::bench::per_call_us(stream, [&](int) { merge(); }, &row.per_call_us, &row.host_us), "per-call timing");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  constexpr int kSteps = 16;
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
  for (int i = 0; i < kSteps; ++i) merge();
  check(cudaStreamEndCapture(stream, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphLaunch(exec, stream), "replay");
  check(cudaStreamSynchronize(stream), "sync");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  std::vector<double> per_step;
  for (int trial = 0; trial < 5; ++trial) {
    check(cudaEventRecord(e0, stream), "record");
    for (int r = 0; r < 20; ++r) check(cudaGraphLaunch(exec, stream), "replay");
    check(cudaEventRecord(e1, stream), "record");
    check(cudaEventSynchronize(e1), "sync");
    float ms;
    check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    per_step.push_back(ms * 1e3 / (20 * kSteps));
  }
  row.pipelined_us = sr::bench::median(per_step);
  std::fprintf(stderr, "  merge%d B=%-3d per-call %8.1f us (host %.1f)  pipelined %8.1f us\n", shards, batch, row.per_call_us,
               row.host_us, row.pipelined_us);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(dout_states);
  cudaFree(dlse_states);
  cudaFree(dout);
  cudaFree(dlse);
  sr_context_destroy(ctx);
  cudaStreamDestroy(stream);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string real_dir = sr::workloads::find_realattn_dir();
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--realattn") && i + 1 < argc) real_dir = argv[++i];
    if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    if (!std::strcmp(argv[i], "--page-tokens") && i + 1 < argc) g_page_tokens = std::atoi(argv[++i]);
  }
  std::vector<Method> methods = {{"dense", SR_ROUTING_OFF, 12.f, 0.f},
                                       {"tau12", SR_ROUTING_TAU, 12.f, 0.f},
                                       {"budget1e-3", SR_ROUTING_BUDGET, 12.f, 1e-3f},
                                       {"budget1e-2", SR_ROUTING_BUDGET, 12.f, 1e-2f},
                                       // What a caller gets with the defaults: dense below 64K.
                                       {"budget1e-3-default", SR_ROUTING_BUDGET, 12.f, 1e-3f, -1},
                                       {"fp8-dense", SR_ROUTING_OFF, 12.f, 0.f, 0, SR_DTYPE_FP8_E4M3},
                                       {"fp8-tau12", SR_ROUTING_TAU, 12.f, 0.f, 0, SR_DTYPE_FP8_E4M3},
                                       {"fp8-budget1e-2", SR_ROUTING_BUDGET, 12.f, 1e-2f, 0, SR_DTYPE_FP8_E4M3}};
  // The attention variants (sink data at 1x128K): the window's rows against its own bytes, sinks
  // and lse against plain dense.
  const std::vector<Method> variant_methods = {
      {"window4096", SR_ROUTING_OFF, 12.f, 0.f, 0, SR_DTYPE_BF16, 4095},
      {"window4096-tau12", SR_ROUTING_TAU, 12.f, 0.f, 0, SR_DTYPE_BF16, 4095},
      {"sinks-lse", SR_ROUTING_OFF, 12.f, 0.f, 0, SR_DTYPE_BF16, -1, true},
      {"sinks-lse-tau12", SR_ROUTING_TAU, 12.f, 0.f, 0, SR_DTYPE_BF16, -1, true}};
  methods.insert(methods.end(), variant_methods.begin(), variant_methods.end());
  // run_case takes the methods of one cache dtype and window at a time.
  auto run_all = [](const std::string& data, const HostContext& host, int32_t batch, const std::vector<Method>& ms,
                    bool reference) {
    std::vector<Row> rows;
    std::vector<bool> done(ms.size(), false);
    for (size_t i = 0; i < ms.size(); ++i) {
      if (done[i]) continue;
      std::vector<Method> same;
      for (size_t j = i; j < ms.size(); ++j) {
        if (!done[j] && ms[j].cache_dtype == ms[i].cache_dtype && ms[j].window_left == ms[i].window_left) {
          same.push_back(ms[j]);
          done[j] = true;
        }
      }
      auto got = run_case(data, host, batch, same, reference);
      rows.insert(rows.end(), got.begin(), got.end());
    }
    return rows;
  };
  auto plain = [&](const std::vector<Method>& ms) {
    std::vector<Method> kept;
    for (const Method& m : ms) {
      if (m.window_left < 0 && !m.sinks) kept.push_back(m);
    }
    return kept;
  };
  struct Shape {
    int32_t batch;
    int64_t length;
  };
  std::vector<Shape> shapes = {{1, 4096}, {64, 4096}, {32, 8192}, {1, 32768}, {8, 32768}, {1, 131072}, {1, 524288}};
  if (quick) shapes = {{1, 4096}, {8, 32768}, {1, 131072}};
  if (!only.empty()) {
    char data[16] = {}, method[160] = {};
    int batch = 0;
    long long length = 0;
    if (std::sscanf(only.c_str(), "%15[^:]:%d:%lld:%159s", data, &batch, &length, method) != 4) die("--only", only.c_str());
    // METHOD may list several, joined by '+': one context made for all of them.
    std::vector<Method> picked;
    const std::string listed = std::string("+") + method + "+";
    for (const Method& m : methods) {
      if (listed.find(std::string("+") + m.name + "+") != std::string::npos) picked.push_back(m);
    }
    if (picked.empty()) die("--only: no such method", method);
    bool sink = std::string(data) == "sink";
    std::printf("data,batch,length,method\n");
    // (The float64 reference, for the bound over the true error, as in the full run: up to 128K.)
    run_all(data, real_dir.empty() || std::string(data) != "real" ? synthetic(sink, length) : real(real_dir), batch,
            picked, length <= 131072);
    return 0;
  }
  std::printf("data,batch,length,method,per_call_us,pipelined_us,kv_bytes,bytes_read,skip_fraction,max_bound,true_error,"
              "heads_recomputed,heads,host_us,median_bound_over_error\n");
  auto emit = [](const std::vector<Row>& rows) {
    for (const Row& r : rows) {
      std::printf("%s,%d,%lld,%s,%.2f,%.2f,%.0f,%.0f,%.4f,%.3e,%.3e,%lld,%lld,%.2f,%.2f\n", r.data.c_str(), r.batch,
                  static_cast<long long>(r.length), r.method.c_str(), r.per_call_us, r.pipelined_us, r.kv_bytes,
                  r.bytes_read, r.skip_fraction, r.max_bound, r.true_error, static_cast<long long>(r.heads_recomputed),
                  static_cast<long long>(r.heads), r.host_us, r.median_bound_over_error);
    }
    std::fflush(stdout);
  };
  if (!real_dir.empty()) emit(run_all("real", real(real_dir), 1, plain(methods), true));
  for (bool sink_heavy : {true, false}) {
    const char* name = sink_heavy ? "sink" : "mixed";
    int64_t made_length = -1;
    HostContext host;
    for (const Shape& s : shapes) {
      if (s.length != made_length) {
        host = synthetic(sink_heavy, s.length);
        made_length = s.length;
      }
      // The variants at one shape: the sink data at 1x128K.
      const bool variants = sink_heavy && s.batch == 1 && s.length == 131072;
      emit(run_all(name, host, s.batch, variants ? methods : plain(methods), s.length <= 131072));
    }
  }
  emit({run_merge(1, 8), run_merge(64, 8)});
  return 0;
}
