// RAII handles, random inputs, cache filling and the float64 reference for the test suite.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "reference.h"
#include "sinkrouter/sinkrouter.h"
#include "synthetic_context.h"
#include "test_backends.h"

namespace sr::testing {

struct ContextDeleter {
  void operator()(sr_context* c) const { sr_context_destroy(c); }
};
struct CacheDeleter {
  void operator()(sr_kv_cache* c) const { sr_kv_cache_destroy(c); }
};
using ContextPtr = std::unique_ptr<sr_context, ContextDeleter>;
using CachePtr = std::unique_ptr<sr_kv_cache, CacheDeleter>;

ContextPtr make_context(sr_backend backend, int32_t threads = 0);

struct CacheShape {
  int32_t layers = 1;
  int32_t kv_heads = 2;
  int32_t head_dim = 128;
  int32_t page_tokens = 16;
  int64_t capacity = 1 << 16;
  sr_dtype dtype = SR_DTYPE_F32;
  int32_t max_batch = 64;
  int32_t max_q_heads = 0;  // 0: the library's default (8 per kv-head)
};
CachePtr make_cache(sr_context* ctx, const CacheShape& shape);

// A fresh seed per run (printed by the tests that use it, so a failure can be replayed).
uint64_t fresh_seed();

std::vector<float> gaussian(std::mt19937_64& rng, size_t n, float stddev = 1.f);

// Appends f32 rows [n][kv_heads][head_dim] (converted to the cache's dtype by the library).
void append_f32(sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t n, const float* k, const float* v);
// Reads tokens back as f32 [n][kv_heads][head_dim].
void read_f32(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t first, int64_t n, float* k, float* v);

// Appends `length` tokens of a synthetic context to a new sequence, in chunks.
sr_seq_id append_synthetic(sr_kv_cache* cache, const workloads::SyntheticContext& context, int32_t layer = 0);

// Float64 attention of every (batch entry, q-head) over what the cache holds (read back, so
// the reference sees exactly the stored values). q is [batch][num_q_heads][head_dim] f32.
std::vector<double> reference_outputs(const sr_kv_cache* cache, const std::vector<sr_seq_id>& seqs, int32_t layer,
                                      const float* q, int32_t num_q_heads, const CacheShape& shape, double scale);

// Decode args with the defaults, for a batch of f32 queries and f32 outputs in host memory.
sr_decode_args decode_args(const std::vector<sr_seq_id>& seqs, int32_t num_q_heads, const float* q, float* out,
                           int32_t layer = 0);

// Per-head relative errors of out against ref ([rows][head_dim]).
std::vector<double> per_head_errors(const float* out, const std::vector<double>& ref, int64_t rows, int32_t head_dim);

// Backends as a GoogleTest parameter list and a readable test-name suffix.
std::string backend_param_name(const ::testing::TestParamInfo<sr_backend>& info);

}  // namespace sr::testing
