// The exchange between GPUs of a context-parallel step (context_parallel/nccl_exchange.h): one
// rank per visible GPU (up to 8, one thread each, one communicator from ncclCommInitAll), each
// holding its range of a sequence; decode, all-gather and merge on every rank give the same
// result everywhere, the float64 result within the merged bound (dense: exactly), and the
// same bits again when the three run as a captured CUDA graph. Skips without a CUDA device.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "nccl_exchange.h"
#include "shard_plan.h"
#include "sharded_sequence.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

bool have_cuda_backend() {
  for (sr_backend b : test_backends()) {
    if (b == SR_BACKEND_CUDA) return true;
  }
  return false;
}

struct RankResult {
  std::vector<float> merged, replayed;  // [out | lse | bound], eager and from the graph
  std::string failure;
};

TEST(NcclExchange, EveryRankMergesTheWholeSequence) {
  int devices = 0;
  if (!have_cuda_backend() || cudaGetDeviceCount(&devices) != cudaSuccess || devices < 1) {
    GTEST_SKIP() << "no CUDA device";
  }
  const int32_t ranks = std::min(devices, 8);
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", " + std::to_string(ranks) + " ranks");
  const ShardedSequence sequence(true, 20000 + 5, seed);
  const int32_t q_heads = sequence.q_heads, D = sequence.shape.head_dim;
  const int64_t length = sequence.length;
  const std::vector<float>& q = sequence.q;
  const std::vector<double> ref = sequence.reference();

  std::vector<int> device_list(static_cast<size_t>(ranks));
  for (int32_t r = 0; r < ranks; ++r) device_list[r] = r;
  std::vector<ncclComm_t> comms(static_cast<size_t>(ranks));
  ASSERT_EQ(ncclCommInitAll(comms.data(), ranks, device_list.data()), ncclSuccess);
  const auto ranges = cp::plan_shards(length, ranks, sequence.shape.page_tokens);
  const cp::StateLayout layout{q_heads, D};

  for (sr_routing_mode mode : {SR_ROUTING_OFF, SR_ROUTING_TAU, SR_ROUTING_BUDGET}) {
    SCOPED_TRACE("routing " + std::to_string(mode));
    std::vector<RankResult> results(static_cast<size_t>(ranks));
    auto run_rank = [&](int32_t r) {
      RankResult& res = results[r];
      auto fail = [&](const std::string& what) { res.failure = what; };
      if (cudaSetDevice(r) != cudaSuccess) return fail("cudaSetDevice");
      cudaStream_t stream;
      if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) return fail("stream");
      sr_context_options co;
      sr_context_options_default(&co, sizeof co);
      co.backend = SR_BACKEND_CUDA;
      co.device_index = r;
      co.stream = stream;
      sr_context* ctx = nullptr;
      if (sr_context_create(&co, &ctx) != SR_OK) return fail(std::string("context: ") + sr_last_error());
      {
        sr_seq_id seq;
        CachePtr cache = sequence.cache_of(ctx, ranges[r].begin, ranges[r].end, &seq);
        float *q_dev = nullptr, *state = nullptr, *gathered = nullptr, *merged = nullptr;
        cudaMalloc(&q_dev, sizeof(float) * q.size());
        cudaMalloc(&state, sizeof(float) * layout.floats());
        cudaMalloc(&gathered, sizeof(float) * layout.floats() * ranks);
        cudaMalloc(&merged, sizeof(float) * layout.floats());
        cudaMemcpy(q_dev, q.data(), sizeof(float) * q.size(), cudaMemcpyHostToDevice);
        sr_decode_args a;
        sr_decode_args_default(&a, sizeof a);
        a.batch = 1;
        a.seq_ids = &seq;
        a.num_q_heads = q_heads;
        a.q = q_dev;
        a.q_dtype = SR_DTYPE_F32;
        a.routing = mode;
        a.error_budget = 1e-3f;
        a.route_from_tokens = 0;
        a.stream = stream;
        auto step = [&] {
          if (cp::decode_rank(ctx, cache.get(), a, layout, state) != SR_OK) return std::string("decode: ") + sr_last_error();
          const char* nccl = nullptr;
          if (cp::exchange_and_merge(comms[r], ctx, layout, state, gathered, merged, SR_DTYPE_F32, merged + layout.lse_offset(),
                                     merged + layout.bound_offset(), stream, &nccl) != SR_OK) {
            return std::string("exchange: ") + (nccl ? nccl : sr_last_error());
          }
          return std::string();
        };
        auto download = [&](std::vector<float>& to) {
          to.resize(static_cast<size_t>(layout.floats()));
          cudaStreamSynchronize(stream);
          cudaMemcpy(to.data(), merged, sizeof(float) * layout.floats(), cudaMemcpyDeviceToHost);
        };
        std::string failed = step();
        if (failed.empty()) download(res.merged);
        // The same step captured in a graph and replayed.
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        if (failed.empty() && cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) failed = "capture";
        if (failed.empty()) {
          failed = step();
          if (cudaStreamEndCapture(stream, &graph) != cudaSuccess && failed.empty()) failed = "end capture";
        }
        if (failed.empty() && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) failed = "instantiate";
        if (failed.empty()) {
          cudaMemsetAsync(merged, 0xff, sizeof(float) * layout.floats(), stream);
          if (cudaGraphLaunch(exec, stream) != cudaSuccess) failed = "graph launch";
        }
        if (failed.empty()) download(res.replayed);
        if (exec) cudaGraphExecDestroy(exec);
        if (graph) cudaGraphDestroy(graph);
        cudaFree(q_dev);
        cudaFree(state);
        cudaFree(gathered);
        cudaFree(merged);
        res.failure = failed;
      }
      sr_context_destroy(ctx);
      cudaStreamDestroy(stream);
    };
    std::vector<std::thread> threads;
    for (int32_t r = 0; r < ranks; ++r) threads.emplace_back(run_rank, r);
    for (std::thread& t : threads) t.join();
    for (int32_t r = 0; r < ranks; ++r) ASSERT_EQ(results[r].failure, "") << "rank " << r;

    const std::vector<float>& got = results[0].merged;
    const std::vector<double> errors = per_head_errors(got.data(), ref, q_heads, D);
    for (int32_t h = 0; h < q_heads; ++h) {
      const float bound = got[layout.bound_offset() + h];
      EXPECT_LE(errors[h], bound + 2e-5) << "head " << h << ": within the merged bound";
      if (mode == SR_ROUTING_OFF) EXPECT_LT(errors[h], 1e-5) << "head " << h;
      if (mode == SR_ROUTING_BUDGET) EXPECT_TRUE(std::isfinite(bound)) << "head " << h;
    }
    for (int32_t r = 0; r < ranks; ++r) {
      EXPECT_EQ(results[r].merged, got) << "rank " << r << " merged the same states to other bits";
      EXPECT_EQ(results[r].replayed, results[r].merged) << "rank " << r << ": the graph's replay differs";
    }
  }
  for (ncclComm_t c : comms) ncclCommDestroy(c);
}

}  // namespace
}  // namespace sr::testing
