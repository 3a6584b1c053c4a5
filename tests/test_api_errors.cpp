// Bad input is part of the spec: every public function rejects null, out-of-range and
// inconsistent arguments with a status and a message naming the argument, and a failed call
// changes nothing (out-parameters, lengths, pages, outputs).
#include <cmath>
#include <limits>
#include <set>
#include <thread>

#include "test_helpers.h"

namespace sr::testing {
namespace {

#define EXPECT_FAILS(call, expected_status, needle)                                               \
  do {                                                                                            \
    sr_status status_ = (call);                                                                   \
    EXPECT_EQ(status_, expected_status) << #call << ": " << sr_last_error();                     \
    std::string message_ = sr_last_error();                                                       \
    EXPECT_NE(message_.find(needle), std::string::npos) << #call << " said: " << message_;       \
  } while (0)

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(ApiErrors, DefaultsFunctions) {
  sr_context_options co;
  sr_kv_cache_options ko;
  sr_kv_io io;
  sr_decode_args da;
  EXPECT_FAILS(sr_context_options_default(nullptr, sizeof co), SR_ERR_INVALID_ARGUMENT, "sr_context_options");
  EXPECT_FAILS(sr_context_options_default(&co, sizeof co - 8), SR_ERR_STRUCT_SIZE, "struct_size");
  EXPECT_FAILS(sr_kv_cache_options_default(&ko, sizeof ko + 8), SR_ERR_STRUCT_SIZE, "struct_size");
  EXPECT_FAILS(sr_kv_io_default(nullptr, sizeof io), SR_ERR_INVALID_ARGUMENT, "sr_kv_io");
  EXPECT_FAILS(sr_decode_args_default(&da, 0), SR_ERR_STRUCT_SIZE, "sr_decode_args.struct_size = 0");
  EXPECT_EQ(sr_decode_args_default(&da, sizeof da), SR_OK);
  EXPECT_EQ(da.struct_size, sizeof da);
  EXPECT_EQ(da.sink_tokens, 4);
  EXPECT_EQ(da.window_tokens, 64);
}

TEST(ApiErrors, ContextCreateAndQueries) {
  sr_context* const sentinel = reinterpret_cast<sr_context*>(0x5);
  sr_context* ctx = sentinel;
  sr_context_options o;
  sr_context_options_default(&o, sizeof o);
  EXPECT_FAILS(sr_context_create(&o, nullptr), SR_ERR_INVALID_ARGUMENT, "out_context");
  o.backend = static_cast<sr_backend>(9);
  EXPECT_FAILS(sr_context_create(&o, &ctx), SR_ERR_INVALID_ARGUMENT, "backend = 9");
  sr_context_options_default(&o, sizeof o);
  o.device_index = -1;
  EXPECT_FAILS(sr_context_create(&o, &ctx), SR_ERR_OUT_OF_RANGE, "device_index = -1");
  o.device_index = 3;
  o.backend = SR_BACKEND_CPU;
  EXPECT_FAILS(sr_context_create(&o, &ctx), SR_ERR_OUT_OF_RANGE, "device_index = 3");
  sr_context_options_default(&o, sizeof o);
  o.num_threads = -2;
  EXPECT_FAILS(sr_context_create(&o, &ctx), SR_ERR_OUT_OF_RANGE, "num_threads = -2");
  o.num_threads = 0;
  o.struct_size = 3;
  EXPECT_FAILS(sr_context_create(&o, &ctx), SR_ERR_STRUCT_SIZE, "sr_context_options.struct_size = 3");
  EXPECT_EQ(ctx, sentinel) << "a failed create must leave the out-parameter alone";

  sr_backend backend = SR_BACKEND_HIP;
  int32_t threads = -7;
  const char* name = "unchanged";
  sr_decode_stats stats{};
  EXPECT_FAILS(sr_context_backend(nullptr, &backend), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_context_num_threads(nullptr, &threads), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_context_device_name(nullptr, &name), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_context_stats(nullptr, &stats, sizeof stats), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_context_reset_stats(nullptr), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_EQ(backend, SR_BACKEND_HIP);
  EXPECT_EQ(threads, -7);
  EXPECT_STREQ(name, "unchanged");

  auto real = make_context(SR_BACKEND_CPU, 1);
  EXPECT_FAILS(sr_context_backend(real.get(), nullptr), SR_ERR_INVALID_ARGUMENT, "out_backend");
  EXPECT_FAILS(sr_context_num_threads(real.get(), nullptr), SR_ERR_INVALID_ARGUMENT, "out_threads");
  EXPECT_FAILS(sr_context_device_name(real.get(), nullptr), SR_ERR_INVALID_ARGUMENT, "out_name");
  EXPECT_FAILS(sr_context_stats(real.get(), nullptr, sizeof stats), SR_ERR_INVALID_ARGUMENT, "out_stats");
  EXPECT_FAILS(sr_context_stats(real.get(), &stats, 12), SR_ERR_STRUCT_SIZE, "sr_decode_stats");
  sr_context_destroy(nullptr);
}

TEST(ApiErrors, CacheCreate) {
  auto ctx = make_context(SR_BACKEND_CPU, 1);
  sr_kv_cache* const sentinel = reinterpret_cast<sr_kv_cache*>(0x9);
  sr_kv_cache* cache = sentinel;
  auto base = [] {
    sr_kv_cache_options o;
    sr_kv_cache_options_default(&o, sizeof o);
    o.num_layers = 2;
    o.num_kv_heads = 2;
    o.capacity_tokens = 1024;
    return o;
  };
  sr_kv_cache_options o = base();
  EXPECT_FAILS(sr_kv_cache_create(nullptr, &o, &cache), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_kv_cache_create(ctx.get(), nullptr, &cache), SR_ERR_INVALID_ARGUMENT, "options");
  EXPECT_FAILS(sr_kv_cache_create(ctx.get(), &o, nullptr), SR_ERR_INVALID_ARGUMENT, "out_cache");
  struct Bad {
    void (*edit)(sr_kv_cache_options&);
    sr_status status;
    const char* needle;
  };
  const Bad cases[] = {
      {[](sr_kv_cache_options& x) { x.num_layers = 0; }, SR_ERR_OUT_OF_RANGE, "num_layers = 0"},
      {[](sr_kv_cache_options& x) { x.num_kv_heads = -1; }, SR_ERR_OUT_OF_RANGE, "num_kv_heads = -1"},
      {[](sr_kv_cache_options& x) { x.head_dim = 96; }, SR_ERR_UNSUPPORTED, "head_dim = 96"},
      {[](sr_kv_cache_options& x) { x.page_tokens = 24; }, SR_ERR_UNSUPPORTED, "page_tokens = 24"},
      {[](sr_kv_cache_options& x) { x.capacity_tokens = 0; }, SR_ERR_OUT_OF_RANGE, "capacity_tokens = 0"},
      {[](sr_kv_cache_options& x) { x.capacity_tokens = INT64_MAX / 2; }, SR_ERR_OUT_OF_RANGE, "too large"},
      {[](sr_kv_cache_options& x) { x.dtype = static_cast<sr_dtype>(6); }, SR_ERR_UNSUPPORTED, "dtype = 6"},
      {[](sr_kv_cache_options& x) { x.dtype = SR_DTYPE_CACHE; }, SR_ERR_UNSUPPORTED, "dtype = -1"},
      {[](sr_kv_cache_options& x) { x.max_batch = 0; }, SR_ERR_OUT_OF_RANGE, "max_batch = 0"},
      {[](sr_kv_cache_options& x) { x.max_q_heads = 3; }, SR_ERR_INVALID_ARGUMENT, "max_q_heads = 3"},
      {[](sr_kv_cache_options& x) { x.struct_size = 1; }, SR_ERR_STRUCT_SIZE, "struct_size = 1"},
  };
  for (const Bad& bad : cases) {
    o = base();
    bad.edit(o);
    EXPECT_FAILS(sr_kv_cache_create(ctx.get(), &o, &cache), bad.status, bad.needle);
  }
  EXPECT_EQ(cache, sentinel);
  int64_t total = -1, free = -1;
  EXPECT_FAILS(sr_kv_cache_pages(nullptr, &total, &free), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_EQ(total, -1);
  sr_kv_cache_destroy(nullptr);
}

class ApiErrorsWithCache : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = make_context(SR_BACKEND_CPU, 2);
    shape_.layers = 2;
    cache_ = make_cache(ctx_.get(), shape_);
    ASSERT_EQ(sr_seq_add(cache_.get(), &seq_), SR_OK);
    std::mt19937_64 rng(1);
    k_ = gaussian(rng, 40 * 256);
    v_ = gaussian(rng, 40 * 256);
    append_f32(cache_.get(), seq_, 0, 40, k_.data(), v_.data());
    sr_kv_io_default(&io_, sizeof io_);
    io_.dtype = SR_DTYPE_F32;
    snapshot_ = state();
  }
  // Everything observable about the cache, to prove a failed call changed nothing.
  std::vector<float> state() {
    std::vector<float> s(40 * 256 * 2);
    read_f32(cache_.get(), seq_, 0, 0, 40, s.data(), s.data() + 40 * 256);
    int64_t total = 0, free = 0, l0 = 0, l1 = 0;
    sr_kv_cache_pages(cache_.get(), &total, &free);
    sr_seq_length(cache_.get(), seq_, 0, &l0);
    sr_seq_length(cache_.get(), seq_, 1, &l1);
    s.push_back(static_cast<float>(free));
    s.push_back(static_cast<float>(l0));
    s.push_back(static_cast<float>(l1));
    return s;
  }
  void TearDown() override { EXPECT_EQ(state(), snapshot_) << "a failed call changed the cache"; }

  ContextPtr ctx_;
  CacheShape shape_;
  CachePtr cache_;
  sr_seq_id seq_ = 0;
  std::vector<float> k_, v_;
  sr_kv_io io_{};
  std::vector<float> snapshot_;
};

TEST_F(ApiErrorsWithCache, Sequences) {
  sr_seq_id out = 77;
  int64_t length = 77;
  EXPECT_FAILS(sr_seq_add(nullptr, &out), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_seq_add(cache_.get(), nullptr), SR_ERR_INVALID_ARGUMENT, "out_seq");
  EXPECT_FAILS(sr_seq_fork(cache_.get(), 999, &out), SR_ERR_UNKNOWN_SEQUENCE, "sequence 999");
  EXPECT_FAILS(sr_seq_fork(cache_.get(), seq_, nullptr), SR_ERR_INVALID_ARGUMENT, "out_child");
  EXPECT_FAILS(sr_seq_fork(nullptr, seq_, &out), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_seq_remove(cache_.get(), -4), SR_ERR_UNKNOWN_SEQUENCE, "sequence -4");
  EXPECT_FAILS(sr_seq_remove(nullptr, seq_), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_seq_length(cache_.get(), 999, 0, &length), SR_ERR_UNKNOWN_SEQUENCE, "sequence 999");
  EXPECT_FAILS(sr_seq_length(cache_.get(), seq_, 2, &length), SR_ERR_OUT_OF_RANGE, "layer = 2");
  EXPECT_FAILS(sr_seq_length(cache_.get(), seq_, -1, &length), SR_ERR_OUT_OF_RANGE, "layer = -1");
  EXPECT_FAILS(sr_seq_length(cache_.get(), seq_, 0, nullptr), SR_ERR_INVALID_ARGUMENT, "out_length");
  EXPECT_FAILS(sr_seq_length(nullptr, seq_, 0, &length), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_seq_truncate(cache_.get(), 999, 0), SR_ERR_UNKNOWN_SEQUENCE, "sequence 999");
  EXPECT_FAILS(sr_seq_truncate(cache_.get(), seq_, 41), SR_ERR_OUT_OF_RANGE, "new_length = 41");
  EXPECT_FAILS(sr_seq_truncate(nullptr, seq_, 1), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_EQ(out, 77);
  EXPECT_EQ(length, 77);
}

TEST_F(ApiErrorsWithCache, Append) {
  sr_kv_cache* c = cache_.get();
  EXPECT_FAILS(sr_kv_append(nullptr, seq_, 0, 1, k_.data(), v_.data(), &io_), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, nullptr, v_.data(), &io_), SR_ERR_INVALID_ARGUMENT, "k is NULL");
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), nullptr, &io_), SR_ERR_INVALID_ARGUMENT, "v is NULL");
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 0, k_.data(), v_.data(), &io_), SR_ERR_INVALID_ARGUMENT, "n_tokens = 0");
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, -3, k_.data(), v_.data(), &io_), SR_ERR_INVALID_ARGUMENT, "n_tokens = -3");
  EXPECT_FAILS(sr_kv_append(c, seq_, 2, 1, k_.data(), v_.data(), &io_), SR_ERR_OUT_OF_RANGE, "layer = 2");
  EXPECT_FAILS(sr_kv_append(c, 999, 0, 1, k_.data(), v_.data(), &io_), SR_ERR_UNKNOWN_SEQUENCE, "sequence 999");
  sr_kv_io bad = io_;
  bad.dtype = static_cast<sr_dtype>(5);
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_UNSUPPORTED, "io.dtype = 5");
  bad.dtype = SR_DTYPE_FP8_E4M3;
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_UNSUPPORTED,
               "io.dtype = SR_DTYPE_FP8_E4M3");
  bad = io_;
  bad.token_stride = -1;
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_INVALID_ARGUMENT, "negative");
  bad = io_;
  bad.head_stride = 64;  // rows of 128 would overlap
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 2, k_.data(), v_.data(), &bad), SR_ERR_INVALID_ARGUMENT, "overlap");
  bad = io_;
  bad.memory = SR_MEMORY_DEVICE;
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_UNSUPPORTED, "SR_MEMORY_DEVICE");
  bad = io_;
  bad.memory = static_cast<sr_memory>(4);
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_INVALID_ARGUMENT, "io.memory = 4");
  bad = io_;
  bad.struct_size = sizeof bad + 16;
  EXPECT_FAILS(sr_kv_append(c, seq_, 0, 1, k_.data(), v_.data(), &bad), SR_ERR_STRUCT_SIZE, "sr_kv_io.struct_size");
}

TEST_F(ApiErrorsWithCache, Read) {
  std::vector<float> out(41 * 256, 1234.f);
  const auto untouched = out;
  const sr_kv_cache* c = cache_.get();
  EXPECT_FAILS(sr_kv_read(nullptr, seq_, 0, 0, 1, out.data(), nullptr, &io_), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_kv_read(c, seq_, 0, 0, 1, nullptr, nullptr, &io_), SR_ERR_INVALID_ARGUMENT, "both NULL");
  EXPECT_FAILS(sr_kv_read(c, seq_, 0, 0, 41, out.data(), nullptr, &io_), SR_ERR_OUT_OF_RANGE, "[0, 41)");
  EXPECT_FAILS(sr_kv_read(c, seq_, 0, -1, 2, out.data(), nullptr, &io_), SR_ERR_OUT_OF_RANGE, "[-1, 1)");
  EXPECT_FAILS(sr_kv_read(c, seq_, 0, 39, 0, out.data(), nullptr, &io_), SR_ERR_INVALID_ARGUMENT, "n_tokens = 0");
  EXPECT_FAILS(sr_kv_read(c, seq_, 1, 0, 1, out.data(), nullptr, &io_), SR_ERR_OUT_OF_RANGE, "holds 0 tokens");
  EXPECT_FAILS(sr_kv_read(c, seq_, 7, 0, 1, out.data(), nullptr, &io_), SR_ERR_OUT_OF_RANGE, "layer = 7");
  EXPECT_FAILS(sr_kv_read(c, 12345, 0, 0, 1, out.data(), nullptr, &io_), SR_ERR_UNKNOWN_SEQUENCE, "12345");
  sr_kv_io fp8_io = io_;
  fp8_io.dtype = SR_DTYPE_FP8_E4M3;
  EXPECT_FAILS(sr_kv_read(c, seq_, 0, 0, 1, out.data(), nullptr, &fp8_io), SR_ERR_UNSUPPORTED,
               "io.dtype = SR_DTYPE_FP8_E4M3");
  EXPECT_EQ(out, untouched);
}

// An FP8 cache's K/V travel as f32, f16 or bf16: its raw codes mean nothing without the scales,
// so "the cache's own dtype" (SR_DTYPE_CACHE, or a NULL io) is refused, and nothing changes.
TEST(ApiErrors, Fp8CacheTransfersNameTheirBufferDtype) {
  auto ctx = make_context(SR_BACKEND_CPU, 1);
  CacheShape shape;
  shape.dtype = SR_DTYPE_FP8_E4M3;
  auto cache = make_cache(ctx.get(), shape);
  sr_seq_id seq;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  std::vector<float> k(2 * 128, 1.f), v(2 * 128, 2.f), out(2 * 128, 7.f);
  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  EXPECT_FAILS(sr_kv_append(cache.get(), seq, 0, 1, k.data(), v.data(), &io), SR_ERR_UNSUPPORTED,
               "io.dtype = SR_DTYPE_CACHE");
  EXPECT_FAILS(sr_kv_append(cache.get(), seq, 0, 1, k.data(), v.data(), nullptr), SR_ERR_UNSUPPORTED, "FP8 cache");
  int64_t length = -1;
  ASSERT_EQ(sr_seq_length(cache.get(), seq, 0, &length), SR_OK);
  EXPECT_EQ(length, 0);
  append_f32(cache.get(), seq, 0, 1, k.data(), v.data());
  EXPECT_FAILS(sr_kv_read(cache.get(), seq, 0, 0, 1, out.data(), nullptr, &io), SR_ERR_UNSUPPORTED,
               "io.dtype = SR_DTYPE_CACHE");
  EXPECT_FAILS(sr_kv_read(cache.get(), seq, 0, 0, 1, out.data(), nullptr, nullptr), SR_ERR_UNSUPPORTED, "FP8 cache");
  EXPECT_EQ(out, std::vector<float>(2 * 128, 7.f));
  EXPECT_EQ(sr_dtype_size(SR_DTYPE_FP8_E4M3), 1u);
}

TEST_F(ApiErrorsWithCache, DecodeStep) {
  std::vector<sr_seq_id> seqs = {seq_};
  std::vector<float> q(4 * 128, 0.5f), out(4 * 128, 4321.f);
  const auto untouched = out;
  sr_context* ctx = ctx_.get();
  const sr_kv_cache* c = cache_.get();
  const sr_decode_args good = decode_args(seqs, 4, q.data(), out.data());
  EXPECT_FAILS(sr_decode_step(nullptr, c, &good), SR_ERR_INVALID_ARGUMENT, "context");
  EXPECT_FAILS(sr_decode_step(ctx, nullptr, &good), SR_ERR_INVALID_ARGUMENT, "cache");
  EXPECT_FAILS(sr_decode_step(ctx, c, nullptr), SR_ERR_INVALID_ARGUMENT, "args");
  struct Bad {
    void (*edit)(sr_decode_args&);
    sr_status status;
    const char* needle;
  };
  static const sr_seq_id unknown = 4242;
  const Bad cases[] = {
      {[](sr_decode_args& a) { a.struct_size = 8; }, SR_ERR_STRUCT_SIZE, "sr_decode_args.struct_size = 8"},
      {[](sr_decode_args& a) { a.layer = 2; }, SR_ERR_OUT_OF_RANGE, "layer = 2"},
      {[](sr_decode_args& a) { a.batch = 0; }, SR_ERR_OUT_OF_RANGE, "batch = 0"},
      {[](sr_decode_args& a) { a.batch = 65; }, SR_ERR_OUT_OF_RANGE, "batch = 65"},
      {[](sr_decode_args& a) { a.seq_ids = nullptr; }, SR_ERR_INVALID_ARGUMENT, "args.seq_ids"},
      {[](sr_decode_args& a) { a.q = nullptr; }, SR_ERR_INVALID_ARGUMENT, "args.q"},
      {[](sr_decode_args& a) { a.out = nullptr; }, SR_ERR_INVALID_ARGUMENT, "args.out"},
      {[](sr_decode_args& a) { a.num_q_heads = 3; }, SR_ERR_INVALID_ARGUMENT, "num_q_heads = 3"},
      {[](sr_decode_args& a) { a.num_q_heads = 0; }, SR_ERR_INVALID_ARGUMENT, "num_q_heads = 0"},
      {[](sr_decode_args& a) { a.num_q_heads = 18; }, SR_ERR_OUT_OF_RANGE, "max_q_heads"},
      {[](sr_decode_args& a) { a.q_dtype = static_cast<sr_dtype>(9); }, SR_ERR_UNSUPPORTED, "q_dtype = 9"},
      {[](sr_decode_args& a) { a.out_dtype = SR_DTYPE_CACHE; }, SR_ERR_UNSUPPORTED, "out_dtype = -1"},
      {[](sr_decode_args& a) { a.q_dtype = SR_DTYPE_FP8_E4M3; }, SR_ERR_UNSUPPORTED, "q_dtype = SR_DTYPE_FP8_E4M3"},
      {[](sr_decode_args& a) { a.out_dtype = SR_DTYPE_FP8_E4M3; }, SR_ERR_UNSUPPORTED, "out_dtype = SR_DTYPE_FP8_E4M3"},
      {[](sr_decode_args& a) { a.scale = -1.f; }, SR_ERR_INVALID_ARGUMENT, "scale = -1"},
      {[](sr_decode_args& a) { a.scale = kNaN; }, SR_ERR_INVALID_ARGUMENT, "scale = nan"},
      {[](sr_decode_args& a) { a.routing = static_cast<sr_routing_mode>(3); }, SR_ERR_INVALID_ARGUMENT, "routing = 3"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_TAU; a.tau = 0.f; }, SR_ERR_OUT_OF_RANGE, "tau = 0"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_TAU; a.tau = kNaN; }, SR_ERR_OUT_OF_RANGE, "tau = nan"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_BUDGET; a.error_budget = 0.f; }, SR_ERR_OUT_OF_RANGE, "error_budget = 0"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_TAU; a.error_budget = -1.f; }, SR_ERR_OUT_OF_RANGE, "error_budget = -1"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_TAU; a.sink_tokens = -1; }, SR_ERR_OUT_OF_RANGE, "sink_tokens = -1"},
      {[](sr_decode_args& a) { a.routing = SR_ROUTING_TAU; a.window_tokens = -5; }, SR_ERR_OUT_OF_RANGE, "window_tokens = -5"},
      {[](sr_decode_args& a) {
         a.routing = SR_ROUTING_TAU;
         a.sink_tokens = 0;
         a.window_tokens = 0;
       },
       SR_ERR_INVALID_ARGUMENT, "anchor set"},
      {[](sr_decode_args& a) { a.route_from_tokens = -2; }, SR_ERR_OUT_OF_RANGE, "route_from_tokens = -2"},
      {[](sr_decode_args& a) {
         a.routing = SR_ROUTING_BUDGET;
         a.route_from_tokens = INT64_MIN;
       },
       SR_ERR_OUT_OF_RANGE, "route_from_tokens = -9223372036854775808"},
      {[](sr_decode_args& a) { a.seq_ids = &unknown; }, SR_ERR_UNKNOWN_SEQUENCE, "sequence 4242"},
      {[](sr_decode_args& a) { a.layer = 1; }, SR_ERR_INVALID_ARGUMENT, "holds no tokens at layer 1"},
  };
  for (const Bad& bad : cases) {
    sr_decode_args a = good;
    bad.edit(a);
    EXPECT_FAILS(sr_decode_step(ctx, c, &a), bad.status, bad.needle);
  }
  EXPECT_EQ(out, untouched) << "a failed decode wrote its output";
  // A cache of another context of the same backend is fine; the call succeeds.
  auto other = make_context(SR_BACKEND_CPU, 1);
  EXPECT_EQ(sr_decode_step(other.get(), c, &good), SR_OK) << sr_last_error();
}

TEST(ApiErrors, LastErrorIsPerThread) {
  EXPECT_EQ(sr_seq_add(nullptr, nullptr), SR_ERR_INVALID_ARGUMENT);
  std::string mine = sr_last_error();
  std::string theirs;
  std::thread([&] {
    theirs = sr_last_error();
    sr_context_reset_stats(nullptr);
  }).join();
  EXPECT_EQ(theirs, "");
  EXPECT_EQ(std::string(sr_last_error()), mine);
}

TEST(ApiErrors, StatusStringsAreDistinct) {
  std::set<std::string> names;
  for (int s = SR_OK; s <= SR_ERR_INTERNAL; ++s) names.insert(sr_status_string(static_cast<sr_status>(s)));
  EXPECT_EQ(names.size(), static_cast<size_t>(SR_ERR_INTERNAL + 1));
}

}  // namespace
}  // namespace sr::testing
