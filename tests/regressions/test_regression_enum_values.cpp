// Regression (fuzzer, tests/fuzz): C callers may store any int in an enum-typed field (C enums
// are ints). The library read such fields as C++ enums before validating them, which is
// undefined behaviour for a value outside the enum's range: UndefinedBehaviorSanitizer stopped
// in sr_context_create on backend = 9 (src/core/api_context.cpp) and likewise for the dtype,
// memory and routing fields. The values must be rejected with a status and a message.
// (Fails under the asan preset on the unfixed library.)
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "sinkrouter/sinkrouter.h"

namespace {

// What a C program does with `options.backend = 9;`, without forming the value in C++.
template <class Enum>
void store_int(Enum& field, int32_t value) {
  static_assert(sizeof(Enum) == sizeof(int32_t), "the API's enums are int-sized");
  std::memcpy(&field, &value, sizeof value);
}

struct ContextDeleter {
  void operator()(sr_context* c) const { sr_context_destroy(c); }
};
struct CacheDeleter {
  void operator()(sr_kv_cache* c) const { sr_kv_cache_destroy(c); }
};

std::unique_ptr<sr_context, ContextDeleter> cpu_context() {
  sr_context_options o;
  sr_context_options_default(&o, sizeof o);
  o.backend = SR_BACKEND_CPU;
  o.num_threads = 1;
  sr_context* context = nullptr;
  EXPECT_EQ(sr_context_create(&o, &context), SR_OK) << sr_last_error();
  return std::unique_ptr<sr_context, ContextDeleter>(context);
}

sr_kv_cache_options small_cache_options() {
  sr_kv_cache_options o;
  sr_kv_cache_options_default(&o, sizeof o);
  o.num_layers = 1;
  o.num_kv_heads = 1;
  o.head_dim = 64;
  o.capacity_tokens = 64;
  o.dtype = SR_DTYPE_F32;
  return o;
}

void expect_rejected(sr_status status) {
  EXPECT_NE(status, SR_OK);
  EXPECT_STRNE(sr_last_error(), "");
}

TEST(RegressionEnumValues, ContextCreateRejectsBackendValuesOutsideTheEnum) {
  for (int32_t value : {9, -1, 1 << 20}) {
    sr_context_options o;
    sr_context_options_default(&o, sizeof o);
    store_int(o.backend, value);
    sr_context* context = nullptr;
    expect_rejected(sr_context_create(&o, &context));
    EXPECT_EQ(context, nullptr);
  }
}

TEST(RegressionEnumValues, CacheCreateRejectsDtypeValuesOutsideTheEnum) {
  auto context = cpu_context();
  for (int32_t value : {7, -9, 1 << 20}) {
    sr_kv_cache_options o = small_cache_options();
    store_int(o.dtype, value);
    sr_kv_cache* cache = nullptr;
    expect_rejected(sr_kv_cache_create(context.get(), &o, &cache));
    EXPECT_EQ(cache, nullptr);
  }
}

TEST(RegressionEnumValues, KvIoRejectsDtypeAndMemoryValuesOutsideTheEnums) {
  auto context = cpu_context();
  sr_kv_cache_options o = small_cache_options();
  sr_kv_cache* raw = nullptr;
  ASSERT_EQ(sr_kv_cache_create(context.get(), &o, &raw), SR_OK) << sr_last_error();
  std::unique_ptr<sr_kv_cache, CacheDeleter> cache(raw);
  sr_seq_id seq = 0;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  std::vector<float> k(64, 1.f), v(64, 1.f);

  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  store_int(io.dtype, 7);
  expect_rejected(sr_kv_append(cache.get(), seq, 0, 1, k.data(), v.data(), &io));
  sr_kv_io_default(&io, sizeof io);
  store_int(io.memory, 2);
  expect_rejected(sr_kv_append(cache.get(), seq, 0, 1, k.data(), v.data(), &io));

  int64_t length = -1;
  ASSERT_EQ(sr_seq_length(cache.get(), seq, 0, &length), SR_OK);
  EXPECT_EQ(length, 0);
}

TEST(RegressionEnumValues, DecodeRejectsRoutingAndDtypeValuesOutsideTheEnums) {
  auto context = cpu_context();
  sr_kv_cache_options o = small_cache_options();
  sr_kv_cache* raw = nullptr;
  ASSERT_EQ(sr_kv_cache_create(context.get(), &o, &raw), SR_OK) << sr_last_error();
  std::unique_ptr<sr_kv_cache, CacheDeleter> cache(raw);
  sr_seq_id seq = 0;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  std::vector<float> k(64, 0.5f), v(64, 0.25f), q(64, 1.f), out(64, 0.f);
  ASSERT_EQ(sr_kv_append(cache.get(), seq, 0, 1, k.data(), v.data(), nullptr), SR_OK) << sr_last_error();

  auto args = [&] {
    sr_decode_args a;
    sr_decode_args_default(&a, sizeof a);
    a.batch = 1;
    a.seq_ids = &seq;
    a.num_q_heads = 1;
    a.q = q.data();
    a.out = out.data();
    return a;
  };
  sr_decode_args a = args();
  store_int(a.routing, -1);
  expect_rejected(sr_decode_step(context.get(), cache.get(), &a));
  a = args();
  store_int(a.q_dtype, 5);
  expect_rejected(sr_decode_step(context.get(), cache.get(), &a));
  a = args();
  store_int(a.out_dtype, -7);
  expect_rejected(sr_decode_step(context.get(), cache.get(), &a));
}

}  // namespace
