// Context-parallel decode in one process (context_parallel/): a sequence's tokens spread over
// 2-8 ranks, each rank's cache holding its range (plan_shards), each rank's step packed into a
// state (decode_rank), the states laid side by side as an all-gather leaves them and merged
// (merge_ranks), against the same sequence in one cache: dense is the unsharded step's result
// (and its lse), routed steps stay within the merged certified bound of the float64 result, on
// sink-heavy and mixed contexts, on every backend present (GPU ranks share one device here;
// the collective between devices is nccl_exchange's, tested in test_nccl_exchange.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <vector>

#include "device_buffers.h"
#include "shard_plan.h"
#include "sharded_sequence.h"
#include "sharded_step.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

constexpr double kRounding = 2e-5;  // f32 arithmetic, which the bound does not cover

TEST(ShardPlan, CoversTheSequenceInPageAlignedRangesInOrder) {
  for (int64_t length : {0, 1, 15, 16, 17, 1000, 16 * 7, 40000 + 3}) {
    for (int32_t ranks : {1, 2, 3, 8}) {
      for (int32_t page : {16, 64}) {
        const auto ranges = cp::plan_shards(length, ranks, page);
        ASSERT_EQ(static_cast<int32_t>(ranges.size()), ranks);
        int64_t at = 0, most = 0, least = length;
        for (const cp::TokenRange& r : ranges) {
          EXPECT_EQ(r.begin, at) << "contiguous";
          EXPECT_LE(r.begin, r.end);
          EXPECT_TRUE(r.begin % page == 0 || r.begin == length) << "page aligned";
          const int64_t pages = (r.end - r.begin + page - 1) / page;
          most = std::max(most, pages);
          least = std::min(least, pages);
          at = r.end;
        }
        EXPECT_EQ(at, length) << "covers the sequence";
        EXPECT_LE(most - least, 1) << "balanced to a page";
      }
    }
  }
}

// Memory of the context: host for the CPU backend, device for GPU ones.
class ContextMemory {
 public:
  explicit ContextMemory(sr_backend backend) : ops_(workloads::device_memory(backend)) {}
  ~ContextMemory() {
    for (void* p : owned_) ops_->release(p);
  }
  float* floats(size_t n) {
    if (!ops_) {
      host_.emplace_back(n, std::nanf(""));
      return host_.back().data();
    }
    void* p = ops_->alloc(sizeof(float) * n);
    ops_->poison(p, sizeof(float) * n);
    owned_.push_back(p);
    return static_cast<float*>(p);
  }
  float* upload(const std::vector<float>& values) {
    float* p = floats(values.size());
    if (ops_) ops_->to_device(p, values.data(), sizeof(float) * values.size());
    else std::copy(values.begin(), values.end(), p);
    return p;
  }
  void copy(float* dst, const float* src, size_t n) {  // within the context's memory
    if (!ops_) {
      std::copy(src, src + n, dst);
      return;
    }
    std::vector<float> staged(n);
    ops_->to_host(staged.data(), src, sizeof(float) * n);
    ops_->to_device(dst, staged.data(), sizeof(float) * n);
  }
  std::vector<float> download(const float* p, size_t n) {
    std::vector<float> out(n);
    if (ops_) {
      ops_->synchronize();
      ops_->to_host(out.data(), p, sizeof(float) * n);
    } else {
      std::copy(p, p + n, out.begin());
    }
    return out;
  }

 private:
  const workloads::DeviceMemoryOps* ops_;
  std::vector<void*> owned_;
  std::vector<std::vector<float>> host_;
};

class ShardedDecode : public ::testing::TestWithParam<sr_backend> {};

TEST_P(ShardedDecode, MergedRanksMatchTheUnshardedStep) {
  const sr_backend backend = GetParam();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto ctx = make_context(backend);
  ContextMemory memory(backend);
  const int64_t length = 12000 + 7;
  for (bool sink_heavy : {true, false}) {
    SCOPED_TRACE(sink_heavy ? "sink-heavy" : "mixed");
    const ShardedSequence sequence(sink_heavy, length, seed);
    const int32_t q_heads = sequence.q_heads, D = sequence.shape.head_dim;
    sr_seq_id whole_seq;
    CachePtr whole = sequence.cache_of(ctx.get(), 0, length, &whole_seq);
    const std::vector<double> ref = sequence.reference();
    const float* q_mem = memory.upload(sequence.q);

    const cp::StateLayout layout{q_heads, D};
    auto step_args = [&](const sr_seq_id* seq, sr_routing_mode mode, float budget) {
      sr_decode_args a;
      sr_decode_args_default(&a, sizeof a);
      a.batch = 1;
      a.seq_ids = seq;
      a.num_q_heads = q_heads;
      a.q = q_mem;
      a.q_dtype = SR_DTYPE_F32;
      a.routing = mode;
      a.error_budget = budget;
      a.route_from_tokens = 0;
      return a;
    };
    struct Mode {
      sr_routing_mode mode;
      float budget;
    };
    const Mode modes[] = {{SR_ROUTING_OFF, 0.f}, {SR_ROUTING_TAU, 0.f}, {SR_ROUTING_BUDGET, 1e-3f}};
    // The unsharded step of each mode, one state each.
    std::vector<std::vector<float>> unsharded;
    std::vector<int64_t> unsharded_skipped;
    auto skipped_since_reset = [&] {
      sr_decode_stats stats;
      EXPECT_EQ(sr_context_stats(ctx.get(), &stats, sizeof stats), SR_OK);
      EXPECT_EQ(sr_context_reset_stats(ctx.get()), SR_OK);
      return stats.blocks_v_skipped;
    };
    for (const Mode& m : modes) {
      float* state = memory.floats(static_cast<size_t>(layout.floats()));
      skipped_since_reset();
      sr_decode_args a = step_args(&whole_seq, m.mode, m.budget);
      a.collect_stats = 1;
      ASSERT_EQ(cp::decode_rank(ctx.get(), whole.get(), a, layout, state), SR_OK) << sr_last_error();
      unsharded.push_back(memory.download(state, static_cast<size_t>(layout.floats())));
      unsharded_skipped.push_back(skipped_since_reset());
    }

    for (int32_t ranks : {2, 3, 8}) {
      SCOPED_TRACE(std::to_string(ranks) + " ranks");
      // Rank r's cache holds its range of the sequence.
      const auto ranges = cp::plan_shards(length, ranks, sequence.shape.page_tokens);
      std::vector<CachePtr> caches;
      std::vector<sr_seq_id> seqs(static_cast<size_t>(ranks));
      for (int32_t r = 0; r < ranks; ++r) caches.push_back(sequence.cache_of(ctx.get(), ranges[r].begin, ranges[r].end, &seqs[r]));
      float* gathered = memory.floats(static_cast<size_t>(ranks * layout.floats()));
      float* state = memory.floats(static_cast<size_t>(layout.floats()));
      float* merged = memory.floats(static_cast<size_t>(layout.floats()));
      for (size_t mi = 0; mi < std::size(modes); ++mi) {
        const Mode& m = modes[mi];
        SCOPED_TRACE("routing " + std::to_string(m.mode));
        skipped_since_reset();
        for (int32_t r = 0; r < ranks; ++r) {
          sr_decode_args a = step_args(&seqs[r], m.mode, m.budget);
          a.collect_stats = 1;
          ASSERT_EQ(cp::decode_rank(ctx.get(), caches[r].get(), a, layout, state), SR_OK) << sr_last_error();
          memory.copy(gathered + r * layout.floats(), state, static_cast<size_t>(layout.floats()));  // the all-gather
        }
        const int64_t skipped = skipped_since_reset();
        if (m.mode != SR_ROUTING_OFF) {
          // Ranks route on their own anchors (context_parallel/README.md): valid, but without the
          // sequence's sinks the later ranks skip less.
          std::printf("[sharded] %s %s, %d ranks: V blocks skipped %lld (unsharded %lld)\n",
                      sink_heavy ? "sink-heavy" : "mixed", m.mode == SR_ROUTING_TAU ? "tau 12" : "budget 1e-3", ranks,
                      static_cast<long long>(skipped), static_cast<long long>(unsharded_skipped[mi]));
        }
        ASSERT_EQ(cp::merge_ranks(ctx.get(), layout, gathered, ranks, merged, SR_DTYPE_F32, merged + layout.lse_offset(),
                                  merged + layout.bound_offset(), nullptr),
                  SR_OK)
            << sr_last_error();
        const std::vector<float> got = memory.download(merged, static_cast<size_t>(layout.floats()));
        const std::vector<float>& one = unsharded[mi];
        const std::vector<double> errors = per_head_errors(got.data(), ref, q_heads, D);
        for (int32_t h = 0; h < q_heads; ++h) {
          const float bound = got[layout.bound_offset() + h];
          EXPECT_LE(errors[h], bound + kRounding) << "head " << h << ": the merged bound holds";
          // Every rank scores all of its logits, so the merged lse is the unsharded one.
          EXPECT_NEAR(got[layout.lse_offset() + h], one[layout.lse_offset() + h], 1e-5) << "head " << h;
          if (m.mode == SR_ROUTING_OFF) {
            EXPECT_EQ(bound, 0.f) << "head " << h;
            EXPECT_LT(errors[h], 1e-5) << "head " << h;
            for (int32_t d = 0; d < D; ++d) {
              EXPECT_NEAR(got[h * D + d], one[h * D + d], 1e-5 * (1.0 + std::fabs(one[h * D + d])))
                  << "head " << h << " dimension " << d;
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ShardedDecode, ::testing::ValuesIn(test_backends()),
                         [](const ::testing::TestParamInfo<sr_backend>& info) { return backend_label(info.param); });

}  // namespace
}  // namespace sr::testing
