// Context-parallel decode benchmark (README.md here): one process per GPU, started by
// run_cp_bench.sh. Rank r holds its range (plan_shards) of one sequence of a Llama-3.1-70B-like
// layer (64 q-heads, 8 kv-heads, head_dim 128, bf16 cache; the benchmark's sink-heavy synthetic
// context, seed 7). A step is decode with lse out, the all-gather of the ranks' states and the
// merge (exchange_and_merge), all on one stream; timed with events over plain steps, over decode
// alone, and as CUDA-graph replays of captured steps. Rank 0 prints one CSV row per method.
//
//   sr_cp_bench --rank R --ranks N --id-file PATH [--length L] [--methods dense,budget1e-2] [--steps S]
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "nccl_exchange.h"
#include "shard_plan.h"
#include "synthetic_context.h"

namespace {

constexpr int32_t kKvHeads = 8, kGroup = 8, kQHeads = kKvHeads * kGroup, kDim = 128, kPage = 16;

[[noreturn]] void die(int rank, const char* what, const char* detail) {
  std::fprintf(stderr, "sr_cp_bench rank %d: %s: %s\n", rank, what, detail ? detail : "");
  std::exit(1);
}

#define CUDA_OR_DIE(call)                                                \
  do {                                                                   \
    const cudaError_t e_ = (call);                                       \
    if (e_ != cudaSuccess) die(rank, #call, cudaGetErrorString(e_));     \
  } while (0)
#define NCCL_OR_DIE(call)                                                \
  do {                                                                   \
    const ncclResult_t r_ = (call);                                      \
    if (r_ != ncclSuccess) die(rank, #call, ncclGetErrorString(r_));     \
  } while (0)
#define SR_OR_DIE(call)                                                  \
  do {                                                                   \
    if ((call) != SR_OK) die(rank, #call, sr_last_error());              \
  } while (0)

// Rank 0 writes the communicator's id to `path` (whole, by rename); the others wait for it.
ncclUniqueId shared_id(int rank, const std::string& path) {
  ncclUniqueId id;
  if (rank == 0) {
    NCCL_OR_DIE(ncclGetUniqueId(&id));
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f || std::fwrite(&id, sizeof id, 1, f) != 1 || std::fclose(f) != 0) die(rank, "writing", tmp.c_str());
    if (std::rename(tmp.c_str(), path.c_str()) != 0) die(rank, "renaming", path.c_str());
    return id;
  }
  for (int waited = 0; waited < 120000; waited += 10) {
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
      const bool ok = std::fread(&id, sizeof id, 1, f) == 1;
      std::fclose(f);
      if (ok) return id;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  die(rank, "no communicator id at", path.c_str());
}

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  size_t from = 0;
  for (size_t comma; (comma = list.find(',', from)) != std::string::npos; from = comma + 1) items.push_back(list.substr(from, comma - from));
  items.push_back(list.substr(from));
  return items;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = -1, ranks = 0, steps = 20;
  int64_t length = 1 << 20;
  std::string id_file, methods = "dense,budget1e-2";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i], value = argv[i + 1];
    if (arg == "--rank") rank = std::atoi(value.c_str());
    else if (arg == "--ranks") ranks = std::atoi(value.c_str());
    else if (arg == "--id-file") id_file = value;
    else if (arg == "--length") length = std::atoll(value.c_str());
    else if (arg == "--methods") methods = value;
    else if (arg == "--steps") steps = std::atoi(value.c_str());
    else die(rank, "unknown argument", arg.c_str());
  }
  if (rank < 0 || ranks < 1 || rank >= ranks || id_file.empty() || length < 1 || steps < 1) {
    std::fprintf(stderr, "usage: sr_cp_bench --rank R --ranks N --id-file PATH [--length L] [--methods dense,budget1e-2] [--steps S]\n");
    return 2;
  }
  int devices = 0;
  CUDA_OR_DIE(cudaGetDeviceCount(&devices));
  const int device = rank % devices;
  CUDA_OR_DIE(cudaSetDevice(device));
  cudaStream_t stream;
  CUDA_OR_DIE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const ncclUniqueId id = shared_id(rank, id_file);
  ncclComm_t comm;
  NCCL_OR_DIE(ncclCommInitRank(&comm, ranks, id, rank));

  // This rank's tokens of the sequence, in its own cache on its own GPU.
  const sr::cp::TokenRange range = sr::cp::plan_shards(length, ranks, kPage)[rank];
  sr_context_options co;
  SR_OR_DIE(sr_context_options_default(&co, sizeof co));
  co.backend = SR_BACKEND_CUDA;
  co.device_index = device;
  co.stream = stream;
  sr_context* ctx = nullptr;
  SR_OR_DIE(sr_context_create(&co, &ctx));
  sr_kv_cache_options ko;
  SR_OR_DIE(sr_kv_cache_options_default(&ko, sizeof ko));
  ko.num_layers = 1;
  ko.num_kv_heads = kKvHeads;
  ko.head_dim = kDim;
  ko.page_tokens = kPage;
  ko.capacity_tokens = range.end - range.begin + kPage;
  ko.dtype = SR_DTYPE_BF16;
  ko.max_q_heads = kQHeads;
  sr_kv_cache* cache = nullptr;
  SR_OR_DIE(sr_kv_cache_create(ctx, &ko, &cache));
  sr_seq_id seq;
  SR_OR_DIE(sr_seq_add(cache, &seq));
  sr::workloads::ContextSpec spec = sr::workloads::sink_heavy_spec(length, 7);
  spec.kv_heads = kKvHeads;
  spec.group = kGroup;
  spec.head_dim = kDim;
  const sr::workloads::SyntheticContext generator(spec);
  {
    constexpr int64_t kChunk = 8192;
    std::vector<float> k(static_cast<size_t>(kChunk) * kKvHeads * kDim), v(k.size());
    sr_kv_io io;
    SR_OR_DIE(sr_kv_io_default(&io, sizeof io));
    io.dtype = SR_DTYPE_F32;
    for (int64_t t = range.begin; t < range.end; t += kChunk) {
      const int64_t n = std::min(kChunk, range.end - t);
      generator.tokens(t, n, k.data(), v.data());
      SR_OR_DIE(sr_kv_append(cache, seq, 0, n, k.data(), v.data(), &io));
    }
  }
  const std::vector<float> q_host = generator.query();
  const sr::cp::StateLayout layout{kQHeads, kDim};
  float *q = nullptr, *state = nullptr, *gathered = nullptr, *out = nullptr, *lse = nullptr, *bound = nullptr;
  CUDA_OR_DIE(cudaMalloc(&q, sizeof(float) * q_host.size()));
  CUDA_OR_DIE(cudaMemcpy(q, q_host.data(), sizeof(float) * q_host.size(), cudaMemcpyHostToDevice));
  CUDA_OR_DIE(cudaMalloc(&state, sizeof(float) * layout.floats()));
  CUDA_OR_DIE(cudaMalloc(&gathered, sizeof(float) * layout.floats() * ranks));
  CUDA_OR_DIE(cudaMalloc(&out, sizeof(float) * kQHeads * kDim));
  CUDA_OR_DIE(cudaMalloc(&lse, sizeof(float) * kQHeads));
  CUDA_OR_DIE(cudaMalloc(&bound, sizeof(float) * kQHeads));
  cudaEvent_t start, stop;
  CUDA_OR_DIE(cudaEventCreate(&start));
  CUDA_OR_DIE(cudaEventCreate(&stop));
  auto barrier = [&] {  // every rank's previous work done before the next timing starts
    NCCL_OR_DIE(ncclAllReduce(bound, bound, 1, ncclFloat, ncclMax, comm, stream));
    CUDA_OR_DIE(cudaStreamSynchronize(stream));
  };

  if (rank == 0) std::printf("ranks,length,method,decode_us,step_us,graph_step_us,exchange_share,max_merged_bound\n");
  for (const std::string& method : split_commas(methods)) {
    sr_decode_args a;
    SR_OR_DIE(sr_decode_args_default(&a, sizeof a));
    a.batch = 1;
    a.seq_ids = &seq;
    a.num_q_heads = kQHeads;
    a.q = q;
    a.q_dtype = SR_DTYPE_F32;
    a.stream = stream;
    a.route_from_tokens = 0;  // a rank's own length decides nothing: route as the sequence would
    if (method == "dense") {
      a.routing = SR_ROUTING_OFF;
    } else if (method.rfind("budget", 0) == 0) {
      a.routing = SR_ROUTING_BUDGET;
      a.error_budget = std::strtof(method.c_str() + 6, nullptr);
    } else if (method.rfind("tau", 0) == 0) {
      a.routing = SR_ROUTING_TAU;
      a.tau = std::strtof(method.c_str() + 3, nullptr);
    } else {
      die(rank, "unknown method", method.c_str());
    }
    const char* nccl_error = nullptr;
    auto decode = [&] { SR_OR_DIE(sr::cp::decode_rank(ctx, cache, a, layout, state)); };
    auto step = [&] {
      decode();
      if (sr::cp::exchange_and_merge(comm, ctx, layout, state, gathered, out, SR_DTYPE_F32, lse, bound, stream, &nccl_error) !=
          SR_OK) {
        die(rank, "exchange_and_merge", nccl_error ? nccl_error : sr_last_error());
      }
    };
    auto timed = [&](auto&& body, int count) {
      barrier();
      CUDA_OR_DIE(cudaEventRecord(start, stream));
      for (int i = 0; i < count; ++i) body();
      CUDA_OR_DIE(cudaEventRecord(stop, stream));
      CUDA_OR_DIE(cudaEventSynchronize(stop));
      float ms = 0.f;
      CUDA_OR_DIE(cudaEventElapsedTime(&ms, start, stop));
      return 1e3 * ms / count;
    };
    for (int i = 0; i < 3; ++i) step();  // warm-up
    const double decode_us = timed(decode, steps);
    const double step_us = timed(step, steps);
    // Captured steps, replayed.
    constexpr int kCaptured = 8;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    barrier();
    CUDA_OR_DIE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < kCaptured; ++i) step();
    CUDA_OR_DIE(cudaStreamEndCapture(stream, &graph));
    CUDA_OR_DIE(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_OR_DIE(cudaGraphLaunch(exec, stream));
    const int replays = std::max(1, steps / kCaptured);
    const double graph_us = timed([&] { CUDA_OR_DIE(cudaGraphLaunch(exec, stream)); }, replays) / kCaptured;
    std::vector<float> bounds(kQHeads);
    CUDA_OR_DIE(cudaMemcpy(bounds.data(), bound, sizeof(float) * kQHeads, cudaMemcpyDeviceToHost));
    if (rank == 0) {
      std::printf("%d,%lld,%s,%.1f,%.1f,%.1f,%.3f,%.3e\n", ranks, static_cast<long long>(length), method.c_str(), decode_us,
                  step_us, graph_us, (step_us - decode_us) / step_us, *std::max_element(bounds.begin(), bounds.end()));
      std::fflush(stdout);
    }
    std::fprintf(stderr, "rank %d: tokens [%lld, %lld) %s decode %.1f us, step %.1f us, graph %.1f us\n", rank,
                 static_cast<long long>(range.begin), static_cast<long long>(range.end), method.c_str(), decode_us, step_us,
                 graph_us);
    CUDA_OR_DIE(cudaGraphExecDestroy(exec));
    CUDA_OR_DIE(cudaGraphDestroy(graph));
  }
  ncclCommDestroy(comm);
  cudaFree(q);
  cudaFree(state);
  cudaFree(gathered);
  cudaFree(out);
  cudaFree(lse);
  cudaFree(bound);
  sr_kv_cache_destroy(cache);
  sr_context_destroy(ctx);
  cudaStreamDestroy(stream);
  return 0;
}
