#include "test_helpers.h"

#include <cmath>

namespace sr::testing {

ContextPtr make_context(sr_backend backend, int32_t threads) {
  sr_context_options o;
  EXPECT_EQ(sr_context_options_default(&o, sizeof o), SR_OK);
  o.backend = backend;
  o.num_threads = threads;
  sr_context* ctx = nullptr;
  EXPECT_EQ(sr_context_create(&o, &ctx), SR_OK) << sr_last_error();
  return ContextPtr(ctx);
}

CachePtr make_cache(sr_context* ctx, const CacheShape& s) {
  sr_kv_cache_options o;
  EXPECT_EQ(sr_kv_cache_options_default(&o, sizeof o), SR_OK);
  o.num_layers = s.layers;
  o.num_kv_heads = s.kv_heads;
  o.head_dim = s.head_dim;
  o.page_tokens = s.page_tokens;
  o.capacity_tokens = s.capacity;
  o.dtype = s.dtype;
  o.max_batch = s.max_batch;
  if (s.max_q_heads > 0) o.max_q_heads = s.max_q_heads;
  sr_kv_cache* cache = nullptr;
  EXPECT_EQ(sr_kv_cache_create(ctx, &o, &cache), SR_OK) << sr_last_error();
  return CachePtr(cache);
}

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::vector<float> gaussian(std::mt19937_64& rng, size_t n, float stddev) {
  std::normal_distribution<float> dist(0.f, stddev);
  std::vector<float> out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

static sr_kv_io f32_io() {
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.dtype = SR_DTYPE_F32;
  return io;
}

void append_f32(sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t n, const float* k, const float* v) {
  sr_kv_io io = f32_io();
  ASSERT_EQ(sr_kv_append(cache, seq, layer, n, k, v, &io), SR_OK) << sr_last_error();
}

void read_f32(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t first, int64_t n, float* k, float* v) {
  sr_kv_io io = f32_io();
  ASSERT_EQ(sr_kv_read(cache, seq, layer, first, n, k, v, &io), SR_OK) << sr_last_error();
}

sr_seq_id append_synthetic(sr_kv_cache* cache, const workloads::SyntheticContext& context, int32_t layer) {
  const auto& spec = context.spec();
  sr_seq_id seq = -1;
  EXPECT_EQ(sr_seq_add(cache, &seq), SR_OK);
  const int64_t chunk = 4096;
  std::vector<float> k(static_cast<size_t>(chunk) * spec.kv_heads * spec.head_dim), v(k.size());
  for (int64_t t = 0; t < spec.length; t += chunk) {
    int64_t n = std::min(chunk, spec.length - t);
    context.tokens(t, n, k.data(), v.data());
    append_f32(cache, seq, layer, n, k.data(), v.data());
  }
  return seq;
}

std::vector<double> reference_outputs(const sr_kv_cache* cache, const std::vector<sr_seq_id>& seqs, int32_t layer,
                                      const float* q, int32_t num_q_heads, const CacheShape& shape, double scale) {
  const int32_t D = shape.head_dim, G = num_q_heads / shape.kv_heads;
  std::vector<double> out;
  for (size_t b = 0; b < seqs.size(); ++b) {
    int64_t length = 0;
    EXPECT_EQ(sr_seq_length(cache, seqs[b], layer, &length), SR_OK);
    std::vector<float> k(static_cast<size_t>(length) * shape.kv_heads * D), v(k.size());
    read_f32(cache, seqs[b], layer, 0, length, k.data(), v.data());
    for (int32_t h = 0; h < num_q_heads; ++h) {
      int32_t kv = h / G;
      const float* qh = q + (b * num_q_heads + h) * D;
      std::vector<double> o = workloads::reference_attention(qh, k.data() + kv * D, v.data() + kv * D, length, D,
                                                             static_cast<int64_t>(shape.kv_heads) * D, scale);
      out.insert(out.end(), o.begin(), o.end());
    }
  }
  return out;
}

sr_decode_args decode_args(const std::vector<sr_seq_id>& seqs, int32_t num_q_heads, const float* q, float* out,
                           int32_t layer) {
  sr_decode_args a;
  sr_decode_args_default(&a, sizeof a);
  a.layer = layer;
  a.batch = static_cast<int32_t>(seqs.size());
  a.seq_ids = seqs.data();
  a.num_q_heads = num_q_heads;
  a.q = q;
  a.out = out;
  a.route_from_tokens = 0;  // the tests route at every length; the policy has tests of its own
  return a;
}

std::vector<double> per_head_errors(const float* out, const std::vector<double>& ref, int64_t rows, int32_t head_dim) {
  std::vector<double> errors(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    errors[r] = workloads::relative_error(out + r * head_dim, ref.data() + r * head_dim, head_dim);
  }
  return errors;
}

std::string backend_param_name(const ::testing::TestParamInfo<sr_backend>& info) {
  return sr_backend_name(info.param);
}

}  // namespace sr::testing
