// One synthetic sequence for the context-parallel tests: its rows and query in f32, and caches
// holding any range of it (the whole sequence, or one rank's tokens).
#pragma once

#include <vector>

#include "test_helpers.h"

namespace sr::testing {

struct ShardedSequence {
  CacheShape shape;  // 2 kv-heads, bf16, 16-token pages
  int32_t group = 4, q_heads = 0;
  int64_t length = 0;
  std::vector<float> k, v, q;  // [length][kv_heads][head_dim], [q_heads][head_dim]

  ShardedSequence(bool sink_heavy, int64_t tokens, uint64_t seed) : length(tokens) {
    shape.kv_heads = 2;
    shape.dtype = SR_DTYPE_BF16;
    q_heads = shape.kv_heads * group;
    shape.max_q_heads = q_heads;
    workloads::ContextSpec spec = sink_heavy ? workloads::sink_heavy_spec(length, seed) : workloads::mixed_spec(length, seed);
    spec.kv_heads = shape.kv_heads;
    spec.group = group;
    workloads::SyntheticContext generator(spec);
    k.resize(static_cast<size_t>(length) * shape.kv_heads * shape.head_dim);
    v.resize(k.size());
    generator.tokens(0, length, k.data(), v.data());
    q = generator.query();
  }

  // A cache of `ctx` whose one sequence (*seq) holds tokens [begin, end).
  CachePtr cache_of(sr_context* ctx, int64_t begin, int64_t end, sr_seq_id* seq) const {
    CacheShape s = shape;
    s.capacity = end - begin + shape.page_tokens;
    CachePtr cache = make_cache(ctx, s);
    EXPECT_EQ(sr_seq_add(cache.get(), seq), SR_OK);
    const int64_t row = int64_t{shape.kv_heads} * shape.head_dim;
    append_f32(cache.get(), *seq, 0, end - begin, k.data() + begin * row, v.data() + begin * row);
    return cache;
  }

  // The float64 attention over the whole sequence as a cache of this shape stores it.
  std::vector<double> reference() const {
    auto host = make_context(SR_BACKEND_CPU);
    sr_seq_id seq;
    CachePtr whole = cache_of(host.get(), 0, length, &seq);
    return reference_outputs(whole.get(), {seq}, 0, q.data(), q_heads, shape, 1.0 / std::sqrt(128.0));
  }
};

}  // namespace sr::testing
