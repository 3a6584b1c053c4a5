// Several threads at once (the header's thread-safety section): decode steps on one cache from
// one shared context or one context per thread, on two caches, and appends to one sequence
// while another is decoded. Every result must equal the single-threaded one bit for bit.
#include <atomic>
#include <thread>

#include "test_helpers.h"

namespace sr::testing {
namespace {

class Concurrency : public ::testing::TestWithParam<sr_backend> {
 protected:
  struct Fixture {
    CachePtr cache;
    std::vector<sr_seq_id> seqs;
    std::vector<float> q;
    int32_t q_heads = 0;
  };

  Fixture build(sr_context* ctx, uint64_t seed) {
    Fixture f;
    CacheShape shape;
    shape.kv_heads = 4;
    shape.dtype = SR_DTYPE_BF16;
    f.cache = make_cache(ctx, shape);
    for (int64_t length : {3000, 1200}) {
      workloads::ContextSpec spec = workloads::mixed_spec(length, seed + length);
      spec.kv_heads = 4;
      workloads::SyntheticContext gen(spec);
      f.seqs.push_back(append_synthetic(f.cache.get(), gen));
      auto q = gen.query();
      f.q.insert(f.q.end(), q.begin(), q.end());
    }
    f.q_heads = 16;
    return f;
  }

  std::vector<float> decode(sr_context* ctx, const Fixture& f, sr_routing_mode mode) {
    std::vector<float> out(f.q.size());
    sr_decode_args a = decode_args(f.seqs, f.q_heads, f.q.data(), out.data());
    a.routing = mode;
    a.tau = 6.f;
    a.error_budget = 1e-3f;
    a.collect_stats = 1;
    EXPECT_EQ(decode_with_host_buffers(ctx, f.cache.get(), a, 128), SR_OK) << sr_last_error();
    return out;
  }

  // Runs `body(thread)` on two threads, each `rounds` times.
  template <class Body>
  static void on_two_threads(int rounds, Body body) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < rounds; ++i) body(t);
      });
    }
    for (auto& th : threads) th.join();
  }
};

TEST_P(Concurrency, TwoThreadsOneCacheOneContext) {
  auto ctx = make_context(GetParam(), 2);
  Fixture f = build(ctx.get(), 11);
  for (sr_routing_mode mode : {SR_ROUTING_OFF, SR_ROUTING_TAU, SR_ROUTING_BUDGET}) {
    const auto expected = decode(ctx.get(), f, mode);
    std::atomic<int> mismatches{0};
    on_two_threads(8, [&](int) {
      if (decode(ctx.get(), f, mode) != expected) ++mismatches;
    });
    EXPECT_EQ(mismatches.load(), 0) << "routing mode " << mode;
  }
  sr_decode_stats s{};
  ASSERT_EQ(sr_context_stats(ctx.get(), &s, sizeof s), SR_OK);
  EXPECT_EQ(s.steps, 3 * (1 + 16)) << "every step counted once, none lost to a race";
}

TEST_P(Concurrency, OneContextPerThreadOnOneCache) {
  auto owner = make_context(GetParam(), 1);
  Fixture f = build(owner.get(), 12);
  const auto expected = decode(owner.get(), f, SR_ROUTING_TAU);
  ContextPtr contexts[2] = {make_context(GetParam(), 1), make_context(GetParam(), 1)};
  std::atomic<int> mismatches{0};
  on_two_threads(8, [&](int t) {
    if (decode(contexts[t].get(), f, SR_ROUTING_TAU) != expected) ++mismatches;
  });
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(Concurrency, TwoCachesTwoThreads) {
  auto ctx = make_context(GetParam(), 2);
  Fixture fixtures[2] = {build(ctx.get(), 21), build(ctx.get(), 22)};
  std::vector<float> expected[2] = {decode(ctx.get(), fixtures[0], SR_ROUTING_BUDGET),
                                    decode(ctx.get(), fixtures[1], SR_ROUTING_BUDGET)};
  std::atomic<int> mismatches{0};
  on_two_threads(8, [&](int t) {
    if (decode(ctx.get(), fixtures[t], SR_ROUTING_BUDGET) != expected[t]) ++mismatches;
  });
  EXPECT_EQ(mismatches.load(), 0);
}

// One thread appends to (and rolls back) its own sequence while another decodes the others.
TEST_P(Concurrency, AppendsBesideDecodes) {
  auto ctx = make_context(GetParam(), 2);
  Fixture f = build(ctx.get(), 31);
  const auto expected = decode(ctx.get(), f, SR_ROUTING_TAU);
  sr_seq_id writer_seq;
  ASSERT_EQ(sr_seq_add(f.cache.get(), &writer_seq), SR_OK);
  std::mt19937_64 rng(5);
  auto k = gaussian(rng, 50 * 4 * 128), v = gaussian(rng, k.size());
  std::atomic<int> mismatches{0}, failures{0};
  on_two_threads(20, [&](int t) {
    if (t == 0) {
      if (decode(ctx.get(), f, SR_ROUTING_TAU) != expected) ++mismatches;
    } else {
      sr_kv_io io;
      sr_kv_io_default(&io, sizeof io);
      io.dtype = SR_DTYPE_F32;
      if (sr_kv_append(f.cache.get(), writer_seq, 0, 50, k.data(), v.data(), &io) != SR_OK) ++failures;
      sr_seq_id child;
      if (sr_seq_fork(f.cache.get(), writer_seq, &child) != SR_OK) ++failures;
      if (sr_seq_remove(f.cache.get(), child) != SR_OK) ++failures;
      if (sr_seq_truncate(f.cache.get(), writer_seq, 10) != SR_OK) ++failures;
    }
  });
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(failures.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, Concurrency, ::testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace
}  // namespace sr::testing
