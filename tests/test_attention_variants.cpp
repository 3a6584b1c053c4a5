// Attention variants of sr_decode_args (learned sink logits, lse out, sliding window, logit
// soft-capping) and sr_merge_attention_states: each alone and combined against the float64
// reference, dense and routed within the certified bound, on random and sink-structured
// inputs; merged shards equal the whole. Every backend runs every variant.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>

#include "shared_arithmetic/dtype_convert.h"
#include "test_helpers.h"

namespace sr::testing {
namespace {

constexpr double kRounding = 2e-5;  // f32 arithmetic, which the bound does not cover
constexpr float kNoSink = -std::numeric_limits<float>::infinity();


class AttentionVariants : public ::testing::TestWithParam<sr_backend> {
 protected:
  struct Batch {
    ContextPtr ctx;
    CachePtr cache;
    CacheShape shape;
    std::vector<sr_seq_id> seqs;
    std::vector<int64_t> lengths;
    std::vector<float> q;
    int32_t q_heads = 0;
    std::vector<std::vector<float>> k, v;  // per sequence, read back: [length][kv_heads][head_dim]
  };

  // Sequences of the given lengths: sink-structured synthetic contexts, or Gaussian rows.
  Batch make_batch(std::vector<int64_t> lengths, bool synthetic, uint64_t seed, int32_t group = 4,
                   int32_t page_tokens = 16, sr_dtype dtype = SR_DTYPE_F32) {
    Batch c;
    c.ctx = make_context(GetParam());
    c.shape.kv_heads = 2;
    c.shape.page_tokens = page_tokens;
    c.shape.dtype = dtype;
    c.shape.max_q_heads = c.shape.kv_heads * group;
    c.shape.capacity = 0;
    for (int64_t l : lengths) c.shape.capacity += l + page_tokens;
    c.cache = make_cache(c.ctx.get(), c.shape);
    c.q_heads = c.shape.kv_heads * group;
    c.lengths = lengths;
    std::mt19937_64 rng(seed);
    const int32_t D = c.shape.head_dim;
    for (size_t i = 0; i < lengths.size(); ++i) {
      if (synthetic) {
        workloads::ContextSpec spec = workloads::sink_heavy_spec(lengths[i], seed + i);
        spec.kv_heads = c.shape.kv_heads;
        spec.group = group;
        workloads::SyntheticContext generator(spec);
        c.seqs.push_back(append_synthetic(c.cache.get(), generator));
        auto q = generator.query();
        c.q.insert(c.q.end(), q.begin(), q.end());
      } else {
        sr_seq_id seq;
        EXPECT_EQ(sr_seq_add(c.cache.get(), &seq), SR_OK);
        auto k = gaussian(rng, static_cast<size_t>(lengths[i]) * c.shape.kv_heads * D);
        auto v = gaussian(rng, k.size());
        append_f32(c.cache.get(), seq, 0, lengths[i], k.data(), v.data());
        c.seqs.push_back(seq);
        auto q = gaussian(rng, static_cast<size_t>(c.q_heads) * D, 1.5f);
        c.q.insert(c.q.end(), q.begin(), q.end());
      }
      std::vector<float> k(static_cast<size_t>(lengths[i]) * c.shape.kv_heads * D), v(k.size());
      read_f32(c.cache.get(), c.seqs.back(), 0, 0, lengths[i], k.data(), v.data());
      c.k.push_back(std::move(k));
      c.v.push_back(std::move(v));
    }
    return c;
  }

  struct Variant {
    std::vector<float> sinks;  // [q_heads] or empty
    int32_t window_left = -1;
    int32_t window_sink_tokens = 0;
    float soft_cap = 0.f;
  };

  std::vector<workloads::ReferenceHead> reference(const Batch& c, const Variant& var) const {
    const int32_t D = c.shape.head_dim, G = c.q_heads / c.shape.kv_heads;
    std::vector<workloads::ReferenceHead> heads;
    for (size_t b = 0; b < c.seqs.size(); ++b) {
      for (int32_t h = 0; h < c.q_heads; ++h) {
        workloads::AttentionVariant v;
        v.sink_logit = var.sinks.empty() ? -INFINITY : var.sinks[h];
        v.window_left = var.window_left;
        v.window_sink_tokens = var.window_sink_tokens;
        v.soft_cap = var.soft_cap;
        const int32_t kv = h / G;
        heads.push_back(workloads::reference_attention_variant(
            c.q.data() + (b * c.q_heads + h) * D, c.k[b].data() + kv * D, c.v[b].data() + kv * D, c.lengths[b], D,
            static_cast<int64_t>(c.shape.kv_heads) * D, 1.0 / std::sqrt(static_cast<double>(D)), v));
      }
    }
    return heads;
  }

  struct Result {
    sr_status status = SR_OK;
    std::vector<float> out, lse, mass, bound;
    sr_decode_stats stats{};
  };

  Result run(Batch& c, const Variant& var, sr_routing_mode mode = SR_ROUTING_OFF, float tau = 12.f,
             float budget = 1e-3f) {
    Result r;
    const int64_t rows = static_cast<int64_t>(c.seqs.size()) * c.q_heads;
    r.out.resize(static_cast<size_t>(rows) * c.shape.head_dim);
    r.lse.resize(rows);
    r.mass.resize(rows);
    r.bound.resize(rows);
    sr_decode_args a = decode_args(c.seqs, c.q_heads, c.q.data(), r.out.data());
    a.routing = mode;
    a.tau = tau;
    a.error_budget = budget;
    a.head_skipped_mass = r.mass.data();
    a.head_error_bound = r.bound.data();
    a.lse = r.lse.data();
    a.sink_logits = var.sinks.empty() ? nullptr : var.sinks.data();
    a.window_left = var.window_left;
    a.window_sink_tokens = var.window_sink_tokens;
    a.logit_soft_cap = var.soft_cap;
    a.collect_stats = 1;
    EXPECT_EQ(sr_context_reset_stats(c.ctx.get()), SR_OK);
    r.status = decode_with_host_buffers(c.ctx.get(), c.cache.get(), a, c.shape.head_dim);
    EXPECT_EQ(sr_context_stats(c.ctx.get(), &r.stats, sizeof r.stats), SR_OK);
    return r;
  }

  // Dense results against the reference: outputs to f32 accuracy, lse to f32 accuracy.
  void expect_matches(const Batch& c, const Variant& var, const Result& r, const char* what) {
    ASSERT_EQ(r.status, SR_OK) << what << ": " << sr_last_error();
    const auto ref = reference(c, var);
    const int32_t D = c.shape.head_dim;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_LE(workloads::relative_error(r.out.data() + i * D, ref[i].out.data(), D), 2e-5) << what << " row " << i;
      EXPECT_NEAR(r.lse[i], ref[i].lse, 2e-5 * (1 + std::fabs(ref[i].lse))) << what << " row " << i;
    }
  }

  // Routed results: the true error within the bound, the lse that of the dense step.
  void expect_within_bound(const Batch& c, const Variant& var, const Result& r, const char* what) {
    ASSERT_EQ(r.status, SR_OK) << what << ": " << sr_last_error();
    const auto ref = reference(c, var);
    const int32_t D = c.shape.head_dim;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double error = workloads::relative_error(r.out.data() + i * D, ref[i].out.data(), D);
      EXPECT_LE(error, r.bound[i] + kRounding) << what << " row " << i << ": true error above the bound";
      EXPECT_NEAR(r.lse[i], ref[i].lse, 2e-5 * (1 + std::fabs(ref[i].lse))) << what << " row " << i;
    }
  }

};

std::vector<float> sink_logits(int32_t heads, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-2.f, 6.f);
  std::vector<float> s(heads);
  for (float& x : s) x = uniform(rng);
  s[0] = kNoSink;  // a head without a sink among them
  return s;
}

TEST_P(AttentionVariants, EachAloneAndCombinedMatchTheFloat64Reference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (bool synthetic : {false, true}) {
    // Mixed lengths, pages of 16 and 32: windows start mid-page, inside the kept tokens' page
    // and past the sequence's start.
    for (int32_t page_tokens : {16, 32}) {
      Batch c = make_batch({1, 37, 300, 1029}, synthetic, seed + page_tokens, 4, page_tokens);
      const std::vector<float> sinks = sink_logits(c.q_heads, rng);
      struct Case {
        const char* name;
        Variant v;
      };
      const Case cases[] = {
          {"plain", {}},
          {"sinks", {sinks, -1, 0, 0.f}},
          {"window 100", {{}, 100, 0, 0.f}},
          {"window 0", {{}, 0, 0, 0.f}},
          {"window 100 + 4 kept", {{}, 100, 4, 0.f}},
          {"window 20 + 40 kept", {{}, 20, 40, 0.f}},
          {"soft cap 5", {{}, -1, 0, 5.f}},
          {"all", {sinks, 257, 4, 30.f}},
      };
      for (const Case& k : cases) {
        SCOPED_TRACE(std::string(k.name) + (synthetic ? ", synthetic" : ", gaussian") + ", page " +
                     std::to_string(page_tokens));
        const Result r = run(c, k.v);  // lse asked for in every case, "plain" included
        expect_matches(c, k.v, r, k.name);
      }
    }
  }
}

TEST_P(AttentionVariants, RoutedStepsStayWithinTheBoundAndKeepTheBudget) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Batch c = make_batch({4096, 9000, 2500}, true, seed);
  const std::vector<float> sinks = sink_logits(c.q_heads, rng);
  const Variant variants[] = {{sinks, -1, 0, 0.f}, {{}, 3000, 4, 0.f}, {{}, -1, 0, 20.f}, {sinks, 5000, 8, 25.f}};
  for (const Variant& var : variants) {
    SCOPED_TRACE("window " + std::to_string(var.window_left) + " cap " + std::to_string(var.soft_cap) +
                 (var.sinks.empty() ? "" : " sinks"));
    const Result tau = run(c, var, SR_ROUTING_TAU, 10.f, 0.f);
    expect_within_bound(c, var, tau, "tau 10");
    EXPECT_GT(tau.stats.blocks_v_skipped, 0) << "sink-structured contexts skip V in tau mode";
    for (float budget : {1e-3f, 1e-2f}) {
      const Result r = run(c, var, SR_ROUTING_BUDGET, 12.f, budget);
      expect_within_bound(c, var, r, "budget");
      for (float b : r.bound) EXPECT_LE(b, budget);
    }
  }
}

TEST_P(AttentionVariants, ADominantSinkLogitLetsTauSkipNearlyAllV) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Batch c = make_batch({8192}, false, seed, 4, 16);
  // Gaussian keys: logits spread around 0 with no structure, so without a sink tau skips little.
  const Result plain = run(c, {}, SR_ROUTING_TAU, 4.f, 0.f);
  ASSERT_EQ(plain.status, SR_OK) << sr_last_error();
  Variant dominant;
  dominant.sinks.assign(c.q_heads, 60.f);  // far above every logit
  const Result r = run(c, dominant, SR_ROUTING_TAU, 4.f, 0.f);
  expect_within_bound(c, dominant, r, "dominant sink");
  const int64_t anchor_blocks = c.shape.kv_heads * (1 + 64 / 16);  // 4 sink tokens, 64 window tokens
  EXPECT_GE(r.stats.blocks_v_skipped, r.stats.blocks_total - anchor_blocks)
      << "every non-anchor V block should be skipped under a dominant sink";
  EXPECT_LT(plain.stats.blocks_v_skipped, r.stats.blocks_v_skipped / 2);
}

TEST_P(AttentionVariants, TokensOutsideTheWindowAreNeverRead) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int32_t KV = 2, D = CacheShape{}.head_dim;
  const int64_t length = 1000;
  auto k = gaussian(rng, static_cast<size_t>(length) * KV * D);
  auto v = gaussian(rng, k.size());
  // NaN rows everywhere but the first 5 tokens and the last 301: one read of them poisons the
  // output, and the reference never sees them. (The GPU's passes differ by element type: f32
  // and FP8 on CUDA cores, bf16 on tensor cores and its streams.)
  for (int64_t t = 5; t < length - 301; ++t) {
    for (int64_t i = 0; i < KV * D; ++i) k[t * KV * D + i] = v[t * KV * D + i] = NAN;
  }
  const std::vector<float> q = gaussian(rng, static_cast<size_t>(4 * KV) * D);
  for (sr_dtype dtype : {SR_DTYPE_F32, SR_DTYPE_BF16, SR_DTYPE_FP8_E4M3}) {
    SCOPED_TRACE("dtype " + std::to_string(dtype));
    Batch c;
    c.ctx = make_context(GetParam());
    c.shape.kv_heads = KV;
    c.shape.dtype = dtype;
    c.shape.capacity = 4096;
    c.cache = make_cache(c.ctx.get(), c.shape);
    c.q_heads = 4 * KV;
    c.q = q;
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(c.cache.get(), &seq), SR_OK);
    append_f32(c.cache.get(), seq, 0, length, k.data(), v.data());
    c.seqs = {seq};
    c.lengths = {length};
    c.k.assign(1, std::vector<float>(k.size()));  // the stored values, NaN rows included
    c.v.assign(1, std::vector<float>(k.size()));
    read_f32(c.cache.get(), seq, 0, 0, length, c.k[0].data(), c.v[0].data());
    Variant var;
    var.window_left = 300;
    var.window_sink_tokens = 5;
    for (sr_routing_mode mode : {SR_ROUTING_OFF, SR_ROUTING_TAU, SR_ROUTING_BUDGET}) {
      const Result r = run(c, var, mode, 8.f, 1e-2f);
      expect_within_bound(c, var, r, "NaN outside the window");
      // Pages scored: the 5 kept tokens' page and the window's 301 tokens (20 pages of 16, one
      // of them shared with the token before), per kv-head.
      EXPECT_LE(r.stats.blocks_total, KV * (1 + 20));
    }
  }
}

TEST_P(AttentionVariants, MergedShardsEqualTheWholeSequence) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int shards : {2, 3, 8}) {
    SCOPED_TRACE(std::to_string(shards) + " shards");
    const int64_t length = 6000;
    // The whole sequence and its shards, each shard a sequence of its own in the same cache.
    Batch whole = make_batch({length}, true, seed + shards);
    std::vector<int64_t> cut = {0};
    for (int i = 1; i < shards; ++i) cut.push_back(length * i / shards + (rng() % 17));
    cut.push_back(length);
    const int32_t D = whole.shape.head_dim, KV = whole.shape.kv_heads, H = whole.q_heads;
    CacheShape shard_shape = whole.shape;
    shard_shape.capacity = length + shards * shard_shape.page_tokens;
    CachePtr shard_cache = make_cache(whole.ctx.get(), shard_shape);
    std::vector<float> sinks = sink_logits(H, rng);
    std::vector<std::vector<float>> outs, lses, bounds;
    for (int i = 0; i < shards; ++i) {
      sr_seq_id seq;
      ASSERT_EQ(sr_seq_add(shard_cache.get(), &seq), SR_OK);
      const int64_t n = cut[i + 1] - cut[i];
      append_f32(shard_cache.get(), seq, 0, n, whole.k[0].data() + cut[i] * KV * D,
                 whole.v[0].data() + cut[i] * KV * D);
      for (sr_routing_mode mode : {SR_ROUTING_OFF, SR_ROUTING_BUDGET}) {
        std::vector<float> out(static_cast<size_t>(H) * D), lse(H), bound(H);
        std::vector<sr_seq_id> ids = {seq};
        sr_decode_args a = decode_args(ids, H, whole.q.data(), out.data());
        a.routing = mode;
        a.error_budget = 1e-2f;
        a.lse = lse.data();
        a.head_error_bound = bound.data();
        a.sink_logits = i == 0 ? sinks.data() : nullptr;  // the sink belongs to one shard
        ASSERT_EQ(decode_with_host_buffers(whole.ctx.get(), shard_cache.get(), a, D), SR_OK) << sr_last_error();
        outs.push_back(out);
        lses.push_back(lse);
        bounds.push_back(bound);
      }
    }
    Variant var;
    var.sinks = sinks;
    const auto ref = reference(whole, var);
    // The states are host arrays here: a CPU context merges them (MergeRunsInTheContextsMemory
    // merges in device memory).
    ContextPtr host = make_context(SR_BACKEND_CPU);
    for (int mode = 0; mode < 2; ++mode) {  // dense, then budget 1e-2
      std::vector<const void*> state_outs;
      std::vector<const float*> state_lses, state_bounds;
      for (int i = 0; i < shards; ++i) {
        state_outs.push_back(outs[2 * i + mode].data());
        state_lses.push_back(lses[2 * i + mode].data());
        state_bounds.push_back(bounds[2 * i + mode].data());
      }
      std::vector<float> merged(static_cast<size_t>(H) * D, NAN), lse(H, NAN), bound(H, NAN);
      sr_merge_args m;
      ASSERT_EQ(sr_merge_args_default(&m, sizeof m), SR_OK);
      m.num_states = shards;
      m.rows = H;
      m.head_dim = D;
      m.state_outs = state_outs.data();
      m.state_lses = state_lses.data();
      m.state_bounds = state_bounds.data();
      m.out = merged.data();
      m.lse = lse.data();
      m.bound = bound.data();
      ASSERT_EQ(sr_merge_attention_states(host.get(), &m), SR_OK) << sr_last_error();
      for (int32_t h = 0; h < H; ++h) {
        const double error = workloads::relative_error(merged.data() + h * D, ref[h].out.data(), D);
        EXPECT_NEAR(lse[h], ref[h].lse, 2e-5 * (1 + std::fabs(ref[h].lse))) << "head " << h;
        if (mode == 0) {
          EXPECT_LE(error, 3e-5) << "dense merge, head " << h;
          EXPECT_EQ(bound[h], 0.f);
        } else {
          EXPECT_LE(error, bound[h] + kRounding) << "routed merge, head " << h << ": above the merged bound";
        }
      }
    }
  }
}

TEST_P(AttentionVariants, MergeTakesOneStateInPlaceAndEmptyStates) {
  if (GetParam() != SR_BACKEND_CPU) GTEST_SKIP() << "host buffers; MergeRunsInTheContextsMemory merges on every backend";
  const int32_t D = 8;
  std::vector<float> a(2 * D), b(2 * D);
  for (int32_t d = 0; d < 2 * D; ++d) {
    a[d] = static_cast<float>(d);
    b[d] = static_cast<float>(-d);
  }
  std::vector<float> lse_a = {0.f, kNoSink}, lse_b = {std::log(3.f), 1.f};
  const void* outs[] = {a.data(), b.data()};
  const float* lses[] = {lse_a.data(), lse_b.data()};
  std::vector<float> lse(2);
  sr_merge_args m;
  ASSERT_EQ(sr_merge_args_default(&m, sizeof m), SR_OK);
  m.num_states = 2;
  m.rows = 2;
  m.head_dim = D;
  m.state_outs = outs;
  m.state_lses = lses;
  m.out = a.data();  // in place over the first state
  m.lse = lse.data();
  ContextPtr ctx = make_context(GetParam());
  ASSERT_EQ(sr_merge_attention_states(ctx.get(), &m), SR_OK) << sr_last_error();
  for (int32_t d = 0; d < D; ++d) EXPECT_NEAR(a[d], 0.25 * d - 0.75 * d, 1e-6);  // weights 1/4, 3/4
  for (int32_t d = D; d < 2 * D; ++d) EXPECT_NEAR(a[d], -d, 1e-6);            // row 1: state a empty
  EXPECT_NEAR(lse[0], std::log(4.0), 1e-6);
  EXPECT_NEAR(lse[1], 1.0, 1e-6);
}

// The merge on every backend, in the context's memory (device memory on a GPU): random states
// in f32 and bf16, empty ones, exact and bounded ones, in place too, against float64.
TEST_P(AttentionVariants, MergeRunsInTheContextsMemoryAgainstFloat64) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ContextPtr ctx = make_context(GetParam());
  const DeviceMemoryOps* mem = device_memory(GetParam());
  if (GetParam() != SR_BACKEND_CPU && !mem) GTEST_SKIP() << "no device memory support in this build";
  std::vector<void*> owned;
  auto place = [&](const void* host, size_t bytes) -> void* {  // the context's copy of a host buffer
    if (!mem) return const_cast<void*>(host);
    void* p = mem->alloc(bytes);
    owned.push_back(p);
    mem->to_device(p, host, bytes);
    return p;
  };
  auto fetch = [&](void* host, const void* placed, size_t bytes) {
    if (mem) mem->to_host(host, placed, bytes);
  };
  std::uniform_real_distribution<float> lse_values(-30.f, 30.f), bound_values(0.f, 0.05f);
  for (sr_dtype dtype : {SR_DTYPE_F32, SR_DTYPE_BF16}) {
    for (int states : {1, 3, 64}) {
      for (bool in_place : {false, true}) {
        SCOPED_TRACE("dtype " + std::to_string(dtype) + ", " + std::to_string(states) + " states" +
                     (in_place ? ", in place" : ""));
        const int64_t rows = 5;
        const int32_t D = 200;  // more than one pass of the GPU block's threads
        std::vector<std::vector<float>> values(states), lses(states), bounds(states);
        std::vector<std::vector<uint16_t>> packed(states);
        std::vector<const void*> outs(states);
        std::vector<const float*> lse_ptrs(states), bound_ptrs(states);
        for (int i = 0; i < states; ++i) {
          values[i] = gaussian(rng, static_cast<size_t>(rows) * D);
          if (dtype == SR_DTYPE_BF16) {
            for (float x : values[i]) packed[i].push_back(float_to_bf16(x));
            for (size_t j = 0; j < values[i].size(); ++j) values[i][j] = bf16_to_float(packed[i][j]);
          }
          for (int64_t r = 0; r < rows; ++r) {
            lses[i].push_back(r == 1 && i % 2 ? kNoSink : lse_values(rng));  // some empty states
            bounds[i].push_back(i % 3 == 2 ? 0.f : bound_values(rng));
          }
          const size_t bytes = values[i].size() * (dtype == SR_DTYPE_F32 ? 4 : 2);
          outs[i] = place(dtype == SR_DTYPE_F32 ? static_cast<const void*>(values[i].data()) : packed[i].data(), bytes);
          lse_ptrs[i] = static_cast<const float*>(place(lses[i].data(), sizeof(float) * rows));
          bound_ptrs[i] = i % 4 == 3 ? nullptr : static_cast<const float*>(place(bounds[i].data(), sizeof(float) * rows));
        }
        const std::vector<std::vector<float>> given = values;  // an in-place merge overwrites values[0] on the CPU
        std::vector<float> merged(static_cast<size_t>(rows) * D, NAN), lse(rows, NAN), bound(rows, NAN);
        void* out = in_place && dtype == SR_DTYPE_F32 ? const_cast<void*>(outs[0]) : place(merged.data(), merged.size() * 4);
        float* lse_out = static_cast<float*>(place(lse.data(), sizeof(float) * rows));
        float* bound_out = static_cast<float*>(place(bound.data(), sizeof(float) * rows));
        sr_merge_args m;
        ASSERT_EQ(sr_merge_args_default(&m, sizeof m), SR_OK);
        m.num_states = states;
        m.rows = rows;
        m.head_dim = D;
        m.state_outs = outs.data();
        m.state_dtype = dtype;
        m.state_lses = lse_ptrs.data();
        m.state_bounds = bound_ptrs.data();
        m.out = out;
        m.lse = lse_out;
        m.bound = bound_out;
        ASSERT_EQ(sr_merge_attention_states(ctx.get(), &m), SR_OK) << sr_last_error();
        if (mem) mem->synchronize();
        fetch(merged.data(), out, merged.size() * 4);
        if (!mem && out != merged.data()) std::memcpy(merged.data(), out, merged.size() * 4);
        fetch(lse.data(), lse_out, sizeof(float) * rows);
        fetch(bound.data(), bound_out, sizeof(float) * rows);
        for (int64_t r = 0; r < rows; ++r) {
          double top = -INFINITY, sum = 0, abs_bound = 0;
          for (int i = 0; i < states; ++i) top = std::max(top, static_cast<double>(lses[i][r]));
          std::vector<double> want(D, 0.0), magnitude(D, 0.0);
          for (int i = 0; i < states; ++i) {
            if (lses[i][r] == kNoSink) continue;
            const double w = std::exp(lses[i][r] - top);
            sum += w;
            double n2 = 0;
            for (int32_t d = 0; d < D; ++d) {
              const double x = given[i][r * D + d];
              want[d] += w * x;
              magnitude[d] += w * std::fabs(x);
              n2 += x * x;
            }
            if (bound_ptrs[i]) abs_bound += w * bounds[i][r] * std::sqrt(n2) / (1 + bounds[i][r]);
          }
          double err2 = 0, mag2 = 0, norm2 = 0;
          for (int32_t d = 0; d < D; ++d) {
            want[d] /= sum;
            err2 += (merged[r * D + d] - want[d]) * (merged[r * D + d] - want[d]);
            mag2 += magnitude[d] * magnitude[d] / (sum * sum);
            norm2 += want[d] * want[d];
          }
          EXPECT_LE(std::sqrt(err2), 1e-5 * std::sqrt(mag2)) << "row " << r;
          EXPECT_NEAR(lse[r], top + std::log(sum), 1e-5 * (1 + std::fabs(top))) << "row " << r;
          const double a = abs_bound / sum, expected_bound = a / (std::sqrt(norm2) - a);
          EXPECT_NEAR(bound[r], expected_bound, 1e-3 * expected_bound + 1e-7) << "row " << r;
        }
        for (void* p : owned) mem->release(p);
        owned.clear();
      }
    }
  }
}

TEST_P(AttentionVariants, BadArgumentsAreRefusedWithNothingWritten) {
  Batch c = make_batch({100}, false, 7);
  const int32_t D = c.shape.head_dim;
  std::vector<float> out(static_cast<size_t>(c.q_heads) * D, NAN), lse(c.q_heads, NAN);
  std::vector<float> sinks(c.q_heads, 0.f);
  struct Bad {
    const char* field;
    void (*set)(sr_decode_args&);
    sr_status expected;
  };
  const Bad bad[] = {
      {"window_left", [](sr_decode_args& a) { a.window_left = -2; }, SR_ERR_OUT_OF_RANGE},
      {"window_sink_tokens", [](sr_decode_args& a) { a.window_sink_tokens = -1; }, SR_ERR_OUT_OF_RANGE},
      {"window_sink_tokens", [](sr_decode_args& a) { a.window_sink_tokens = 4; }, SR_ERR_INVALID_ARGUMENT},
      {"logit_soft_cap", [](sr_decode_args& a) { a.logit_soft_cap = -1.f; }, SR_ERR_OUT_OF_RANGE},
      {"logit_soft_cap", [](sr_decode_args& a) { a.logit_soft_cap = NAN; }, SR_ERR_OUT_OF_RANGE},
      {"logit_soft_cap", [](sr_decode_args& a) { a.logit_soft_cap = INFINITY; }, SR_ERR_OUT_OF_RANGE},
  };
  for (const Bad& b : bad) {
    sr_decode_args a = decode_args(c.seqs, c.q_heads, c.q.data(), out.data());
    a.lse = lse.data();
    b.set(a);
    EXPECT_EQ(sr_decode_step(c.ctx.get(), c.cache.get(), &a), b.expected) << b.field;
    EXPECT_NE(std::string(sr_last_error()).find(b.field), std::string::npos) << sr_last_error();
  }
  if (GetParam() == SR_BACKEND_CPU) {  // host sink logits are checked; NaN and +inf are refused
    for (float x : {NAN, INFINITY}) {
      sinks[3] = x;
      sr_decode_args a = decode_args(c.seqs, c.q_heads, c.q.data(), out.data());
      a.lse = lse.data();
      a.sink_logits = sinks.data();
      EXPECT_EQ(sr_decode_step(c.ctx.get(), c.cache.get(), &a), SR_ERR_INVALID_ARGUMENT);
      EXPECT_NE(std::string(sr_last_error()).find("sink_logits[3]"), std::string::npos) << sr_last_error();
    }
  }
  for (float x : out) EXPECT_TRUE(std::isnan(x)) << "a refused step wrote its output";
  for (float x : lse) EXPECT_TRUE(std::isnan(x)) << "a refused step wrote lse";

  // The merge.
  std::vector<float> state(static_cast<size_t>(D), 1.f), state_lse(1, 0.f), merged(D, NAN);
  const void* outs[] = {state.data(), nullptr};
  const float* lses[] = {state_lse.data(), state_lse.data()};
  struct BadMerge {
    const char* field;
    void (*set)(sr_merge_args&);
    sr_status expected;
  };
  const BadMerge bad_merge[] = {
      {"num_states", [](sr_merge_args& m) { m.num_states = 0; }, SR_ERR_OUT_OF_RANGE},
      {"num_states", [](sr_merge_args& m) { m.num_states = 65; }, SR_ERR_OUT_OF_RANGE},
      {"rows", [](sr_merge_args& m) { m.rows = 0; }, SR_ERR_OUT_OF_RANGE},
      {"head_dim", [](sr_merge_args& m) { m.head_dim = -1; }, SR_ERR_OUT_OF_RANGE},
      {"state_outs[1]", [](sr_merge_args& m) { m.num_states = 2; }, SR_ERR_INVALID_ARGUMENT},
      {"state_lses", [](sr_merge_args& m) { m.state_lses = nullptr; }, SR_ERR_INVALID_ARGUMENT},
      {"args.out", [](sr_merge_args& m) { m.out = nullptr; }, SR_ERR_INVALID_ARGUMENT},
      {"state_dtype", [](sr_merge_args& m) { m.state_dtype = SR_DTYPE_FP8_E4M3; }, SR_ERR_UNSUPPORTED},
      {"out_dtype", [](sr_merge_args& m) { m.out_dtype = static_cast<sr_dtype>(9); }, SR_ERR_UNSUPPORTED},
  };
  for (const BadMerge& b : bad_merge) {
    sr_merge_args m;
    ASSERT_EQ(sr_merge_args_default(&m, sizeof m), SR_OK);
    m.num_states = 1;
    m.rows = 1;
    m.head_dim = D;
    m.state_outs = outs;
    m.state_lses = lses;
    m.out = merged.data();
    b.set(m);
    EXPECT_EQ(sr_merge_attention_states(c.ctx.get(), &m), b.expected) << b.field;
    EXPECT_NE(std::string(sr_last_error()).find(b.field), std::string::npos) << sr_last_error();
  }
  EXPECT_EQ(sr_merge_attention_states(c.ctx.get(), nullptr), SR_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sr_merge_attention_states(nullptr, nullptr), SR_ERR_INVALID_ARGUMENT);
  for (float x : merged) EXPECT_TRUE(std::isnan(x)) << "a refused merge wrote its output";
}

TEST_P(AttentionVariants, ACallerOfTheOldStructSizeKeepsPlainAttention) {
  Batch c = make_batch({333}, false, 11);
  const int32_t D = c.shape.head_dim;
  std::vector<float> out(static_cast<size_t>(c.q_heads) * D);
  sr_decode_args a = decode_args(c.seqs, c.q_heads, c.q.data(), out.data());
  // Garbage where the new fields sit: a 0.2.0 caller never wrote them.
  std::memset(reinterpret_cast<char*>(&a) + offsetof(sr_decode_args, sink_logits), 0xab,
              sizeof a - offsetof(sr_decode_args, sink_logits));
  a.struct_size = offsetof(sr_decode_args, route_from_tokens) + sizeof a.route_from_tokens;
  ASSERT_EQ(decode_with_host_buffers(c.ctx.get(), c.cache.get(), a, D), SR_OK) << sr_last_error();
  const auto ref = reference(c, {});
  for (int32_t h = 0; h < c.q_heads; ++h) {
    EXPECT_LE(workloads::relative_error(out.data() + h * D, ref[h].out.data(), D), 2e-5) << "head " << h;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AttentionVariants, ::testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace
}  // namespace sr::testing
