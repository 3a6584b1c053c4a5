// Options structs that grow (src/core/struct_args.h, README "Conventions"): a struct of an
// older, smaller known version reads as its prefix over the defaults; fill_default and outputs
// write only the caller's prefix; a newer or unknown struct_size is refused with
// SR_ERR_STRUCT_SIZE and a message naming the struct, and the failed call changes nothing.
//
// The mechanism is tested on a test-only struct at its second version, through the same
// struct_sizes<T> list the library uses (its pure functions: sr::fail is not exported); then
// every public options struct goes through the C API.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/struct_args.h"
#include "test_helpers.h"

// Version 1 of a test-only options struct, as a program built against the older header has it.
struct test_opts_v1 {
  size_t struct_size;
  int32_t a;
  int32_t b;
  int32_t c;
};

// Version 2: v1's fields, then one appended field.
struct test_opts_v2 {
  size_t struct_size;
  int32_t a;
  int32_t b;
  int32_t c;
  int64_t d;  // appended in v2
};

// A v2 whose first appended field lies in v1's tail padding (v1: {size_t, 3 x int32} has 4
// bytes of it on LP64): an old caller's padding bytes must not become that field.
struct test_tail_v2 {
  size_t struct_size;
  int32_t a;
  int32_t b;
  int32_t c;
  int32_t d;  // v2, where v1's padding was
  int64_t e;  // v2 (so that sizeof grows)
};

namespace sr {
template <>
struct struct_sizes<test_opts_v2> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(test_opts_v2, c),  // v1
      SR_STRUCT_VERSION(test_opts_v2, d),  // v2
  };
};
template <>
struct struct_sizes<test_tail_v2> {
  static constexpr struct_version known[] = {
      SR_STRUCT_VERSION(test_tail_v2, c),  // v1
      SR_STRUCT_VERSION(test_tail_v2, e),  // v2
  };
};
}  // namespace sr

namespace sr::testing {
namespace {

constexpr unsigned char kPoison = 0xAB;

void test_opts_defaults(test_opts_v2* o) {
  *o = test_opts_v2{};
  o->struct_size = sizeof *o;
  o->a = 1;
  o->b = 2;
  o->c = 3;
  o->d = 44;
}

void test_tail_defaults(test_tail_v2* o) {
  *o = test_tail_v2{};
  o->struct_size = sizeof *o;
  o->a = 1;
  o->b = 2;
  o->c = 3;
  o->d = 4;
  o->e = 5;
}

bool all_poison(const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != kPoison) return false;
  }
  return true;
}

// A caller's memory: a struct of `size` bytes (its first bytes `prefix`) followed by poison.
std::vector<unsigned char> caller_bytes(const void* prefix, size_t prefix_bytes, size_t total) {
  std::vector<unsigned char> bytes(total, kPoison);
  std::memcpy(bytes.data(), prefix, prefix_bytes);
  return bytes;
}

constexpr size_t kV1 = sizeof(test_opts_v1);
constexpr size_t kV1Fields = offsetof(test_opts_v1, c) + sizeof(int32_t);
constexpr size_t kV2 = sizeof(test_opts_v2);

TEST(StructSizes, VersionListMatchesEachVersionsSizeof) {
  const auto& known = struct_sizes<test_opts_v2>::known;
  EXPECT_EQ(known[0].size, sizeof(test_opts_v1)) << "the v1 entry must be what v1's sizeof gave";
  EXPECT_EQ(known[0].fields_end, kV1Fields);
  EXPECT_EQ(known[1].size, sizeof(test_opts_v2));
  EXPECT_TRUE(check_struct_versions<test_opts_v2>());
  EXPECT_TRUE(check_struct_versions<test_tail_v2>());
  EXPECT_EQ(struct_sizes<test_tail_v2>::known[0].size, sizeof(test_opts_v1));
}

// What the library reads from a caller's bytes, which must be accepted; a, b, c as given.
test_opts_v2 read_accepted(const std::vector<unsigned char>& bytes) {
  test_opts_v2 got{};
  struct_check check = try_read_struct(reinterpret_cast<const test_opts_v2*>(bytes.data()), "test_opts_v2",
                                       test_opts_defaults, &got);
  EXPECT_EQ(check.status, SR_OK) << check.message;
  EXPECT_EQ(got.a, 7);
  EXPECT_EQ(got.b, 8);
  EXPECT_EQ(got.c, 9);
  return got;
}

TEST(StructSizes, OlderKnownSizeReadsItsFieldsOverTheDefaults) {
  // Built by hand as a v1 caller has it: struct_size = v1's sizeof, its fields, and poison
  // from where its fields end (its tail padding included) on.
  test_opts_v1 v1{kV1, 7, 8, 9};
  const test_opts_v2 got = read_accepted(caller_bytes(&v1, kV1Fields, kV2 + 16));
  EXPECT_EQ(got.d, 44) << "the field v1 does not have must keep its default, not the caller's poison";
  EXPECT_EQ(got.struct_size, kV2) << "what was read is a whole struct of this version";
}

TEST(StructSizes, CurrentSizeReadsEveryField) {
  test_opts_v2 v2{kV2, 7, 8, 9, -123456789012345};
  EXPECT_EQ(read_accepted(caller_bytes(&v2, kV2, kV2 + 16)).d, -123456789012345);
}

TEST(StructSizes, NullReadsTheDefaults) {
  test_opts_v2 got{};
  struct_check check = try_read_struct<test_opts_v2>(nullptr, "test_opts_v2", test_opts_defaults, &got);
  ASSERT_EQ(check.status, SR_OK);
  EXPECT_EQ(got.a, 1);
  EXPECT_EQ(got.d, 44);
}

TEST(StructSizes, OldCallersTailPaddingNeverBecomesANewField) {
  // v1's padding (poison) sits where v2 put d: reading a v1 struct must leave d at its default.
  test_opts_v1 v1{kV1, 7, 8, 9};
  auto bytes = caller_bytes(&v1, kV1Fields, sizeof(test_tail_v2) + 16);
  ASSERT_EQ(offsetof(test_tail_v2, d), kV1Fields);
  test_tail_v2 got{};
  struct_check check = try_read_struct(reinterpret_cast<const test_tail_v2*>(bytes.data()), "test_tail_v2",
                                       test_tail_defaults, &got);
  ASSERT_EQ(check.status, SR_OK) << check.message;
  EXPECT_EQ(got.c, 9);
  EXPECT_EQ(got.d, 4);
  EXPECT_EQ(got.e, 5);
}

TEST(StructSizes, UnknownSizesAreRefusedWithTheKnownOnes) {
  const std::string knows = "but this library (" SR_VERSION_STRING ") knows test_opts_v2 of " +
                            std::to_string(kV1) + " or " + std::to_string(kV2) + " bytes";
  for (size_t size : {kV1 + 4, kV2 + 8, size_t{0}, size_t{3}, kV1Fields, kV1 - 4, kV2 - 4,
                      std::numeric_limits<size_t>::max()}) {
    SCOPED_TRACE("struct_size = " + std::to_string(size));
    test_opts_v2 v2{size, 7, 8, 9, 10};
    auto bytes = caller_bytes(&v2, kV2, kV2 + 16);
    test_opts_v2 got{};
    got.a = -1;
    struct_check check = try_read_struct(reinterpret_cast<const test_opts_v2*>(bytes.data()), "test_opts_v2",
                                         test_opts_defaults, &got);
    EXPECT_EQ(check.status, SR_ERR_STRUCT_SIZE);
    std::string message = check.message;
    EXPECT_NE(message.find("test_opts_v2.struct_size = " + std::to_string(size) + ","), std::string::npos) << message;
    EXPECT_NE(message.find(knows), std::string::npos) << message;
    EXPECT_EQ(message.find("newer header") != std::string::npos, size > kV2) << message;
    EXPECT_EQ(got.a, -1) << "a refused read leaves the output alone";

    // fill_default refuses the same sizes and writes nothing.
    std::vector<unsigned char> out(kV2 + 16, kPoison);
    check = try_fill_default(reinterpret_cast<test_opts_v2*>(out.data()), size, "test_opts_v2", test_opts_defaults);
    EXPECT_EQ(check.status, SR_ERR_STRUCT_SIZE);
    EXPECT_NE(std::string(check.message).find("test_opts_v2.struct_size = " + std::to_string(size)), std::string::npos);
    EXPECT_TRUE(all_poison(out.data(), out.size())) << "a refused fill_default wrote into the caller's struct";
  }
}

TEST(StructSizes, FillDefaultWritesExactlyTheCallersVersion) {
  std::vector<unsigned char> out(kV2 + 16, kPoison);
  struct_check check = try_fill_default(reinterpret_cast<test_opts_v2*>(out.data()), kV1, "test_opts_v2",
                                        test_opts_defaults);
  ASSERT_EQ(check.status, SR_OK) << check.message;
  test_opts_v1 v1;
  std::memcpy(&v1, out.data(), kV1);
  EXPECT_EQ(v1.struct_size, kV1) << "a v1 caller's struct must say v1, or it would be read as v2 later";
  EXPECT_EQ(v1.a, 1);
  EXPECT_EQ(v1.b, 2);
  EXPECT_EQ(v1.c, 3);
  EXPECT_TRUE(all_poison(out.data() + kV1, out.size() - kV1)) << "fill_default wrote past a v1 struct";

  std::fill(out.begin(), out.end(), kPoison);
  check = try_fill_default(reinterpret_cast<test_opts_v2*>(out.data()), kV2, "test_opts_v2", test_opts_defaults);
  ASSERT_EQ(check.status, SR_OK) << check.message;
  test_opts_v2 v2;
  std::memcpy(&v2, out.data(), kV2);
  EXPECT_EQ(v2.struct_size, kV2);
  EXPECT_EQ(v2.d, 44);
  EXPECT_TRUE(all_poison(out.data() + kV2, out.size() - kV2));
}

TEST(StructSizes, LibraryListsEndAtTodaysSizeof) {
  EXPECT_TRUE(check_struct_versions<sr_context_options>());
  EXPECT_TRUE(check_struct_versions<sr_kv_cache_options>());
  EXPECT_TRUE(check_struct_versions<sr_kv_io>());
  EXPECT_TRUE(check_struct_versions<sr_decode_args>());
  EXPECT_TRUE(check_struct_versions<sr_decode_stats>());
  // The 0.1.0 release (abi/libsinkrouter.so.1.abi, LP64): sr_decode_args of 960 bits ended at
  // `stream`, sr_decode_stats of 512 bits at `max_error_bound`. Programs built then pass these.
  if (sizeof(void*) == 8) {
    EXPECT_EQ(struct_sizes<sr_decode_args>::known[0].size, 120u);
    EXPECT_EQ(struct_sizes<sr_decode_stats>::known[0].size, 64u);
    EXPECT_EQ(struct_sizes<sr_context_options>::known[0].size, 32u);
    EXPECT_EQ(struct_sizes<sr_kv_cache_options>::known[0].size, 48u);
    EXPECT_EQ(struct_sizes<sr_kv_io>::known[0].size, 48u);
  }
}

// ---------------------------------------------------------------- through the public API

#define EXPECT_REFUSED(call, name, size)                                                        \
  do {                                                                                          \
    sr_status status_ = (call);                                                                 \
    EXPECT_EQ(status_, SR_ERR_STRUCT_SIZE) << #call << ": " << sr_last_error();                 \
    std::string message_ = sr_last_error();                                                     \
    std::string needle_ = std::string(name) + ".struct_size = " + std::to_string(size) + ", "; \
    EXPECT_NE(message_.find(needle_), std::string::npos) << #call << " said: " << message_;     \
    EXPECT_NE(message_.find(std::string("knows ") + (name) + " of "), std::string::npos) << message_; \
  } while (0)

// Sizes a caller may not pass: newer (sizeof + 8), and smaller than sizeof but no version.
std::vector<size_t> refused_sizes(size_t current) { return {current + 8, current - 4, 0}; }

// `call` given `value` at every refused struct_size, as a caller built against a newer header
// passes it (its 8 more bytes really there) or a wrong size: refused, naming the struct. `call`
// checks that the refused call changed nothing.
template <class T, class Call>
void expect_refused_at_wrong_sizes(const T& value, const char* name, Call&& call) {
  struct {
    T value;
    int64_t appended;
  } newer{value, 7};
  for (size_t size : refused_sizes(sizeof(T))) {
    newer.value.struct_size = size;
    EXPECT_REFUSED(call(&newer.value), name, size);
  }
}

template <class T>
void check_default_function(sr_status (*fill)(T*, size_t), const char* name) {
  SCOPED_TRACE(name);
  for (size_t size : refused_sizes(sizeof(T))) {
    std::vector<unsigned char> bytes(sizeof(T) + 16, kPoison);
    EXPECT_REFUSED(fill(reinterpret_cast<T*>(bytes.data()), size), name, size);
    EXPECT_TRUE(all_poison(bytes.data(), bytes.size())) << name << ": a refused *_default wrote " << size;
  }
  for (const struct_version& version : struct_sizes<T>::known) {
    std::vector<unsigned char> bytes(sizeof(T) + 16, kPoison);
    ASSERT_EQ(fill(reinterpret_cast<T*>(bytes.data()), version.size), SR_OK) << sr_last_error();
    size_t written;
    std::memcpy(&written, bytes.data(), sizeof written);
    EXPECT_EQ(written, version.size);
    EXPECT_TRUE(all_poison(bytes.data() + version.size, bytes.size() - version.size))
        << name << "_default wrote past struct_size " << version.size;
  }
}

TEST(StructSizesApi, DefaultFunctions) {
  check_default_function(sr_context_options_default, "sr_context_options");
  check_default_function(sr_kv_cache_options_default, "sr_kv_cache_options");
  check_default_function(sr_kv_io_default, "sr_kv_io");
  check_default_function(sr_decode_args_default, "sr_decode_args");
}

TEST(StructSizesApi, ContextOptions) {
  sr_context* const sentinel = reinterpret_cast<sr_context*>(0x5);
  sr_context_options o;
  ASSERT_EQ(sr_context_options_default(&o, sizeof o), SR_OK);
  o.backend = SR_BACKEND_CPU;
  o.num_threads = 1;
  expect_refused_at_wrong_sizes(o, "sr_context_options", [&](const sr_context_options* options) {
    sr_context* ctx = sentinel;
    const sr_status status = sr_context_create(options, &ctx);
    EXPECT_EQ(ctx, sentinel) << "a failed create must leave the out-parameter alone";
    return status;
  });
  sr_context* ctx = sentinel;
  ASSERT_EQ(sr_context_create(&o, &ctx), SR_OK) << sr_last_error();
  ContextPtr owned(ctx);
  int32_t threads = 0;
  ASSERT_EQ(sr_context_num_threads(ctx, &threads), SR_OK);
  EXPECT_EQ(threads, 1);
}

TEST(StructSizesApi, KvCacheOptions) {
  auto ctx = make_context(SR_BACKEND_CPU, 1);
  sr_kv_cache* const sentinel = reinterpret_cast<sr_kv_cache*>(0x9);
  sr_kv_cache_options o;
  ASSERT_EQ(sr_kv_cache_options_default(&o, sizeof o), SR_OK);
  o.num_layers = 1;
  o.num_kv_heads = 2;
  o.capacity_tokens = 256;
  expect_refused_at_wrong_sizes(o, "sr_kv_cache_options", [&](const sr_kv_cache_options* options) {
    sr_kv_cache* cache = sentinel;
    const sr_status status = sr_kv_cache_create(ctx.get(), options, &cache);
    EXPECT_EQ(cache, sentinel) << "a failed create must leave the out-parameter alone";
    return status;
  });
  sr_kv_cache* cache = sentinel;
  ASSERT_EQ(sr_kv_cache_create(ctx.get(), &o, &cache), SR_OK) << sr_last_error();
  CachePtr owned(cache);
}

class StructSizesWithCache : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = make_context(SR_BACKEND_CPU, 1);
    shape_.layers = 1;
    shape_.kv_heads = 2;
    shape_.head_dim = 64;
    shape_.capacity = 1024;
    shape_.dtype = SR_DTYPE_F32;
    cache_ = make_cache(ctx_.get(), shape_);
    ASSERT_TRUE(cache_);
    ASSERT_EQ(sr_seq_add(cache_.get(), &seq_), SR_OK);
    std::mt19937_64 rng(7);
    k_ = gaussian(rng, static_cast<size_t>(kTokens) * shape_.kv_heads * shape_.head_dim);
    v_ = gaussian(rng, k_.size());
    append_f32(cache_.get(), seq_, 0, kTokens, k_.data(), v_.data());
  }

  int64_t length() const {
    int64_t n = -1;
    EXPECT_EQ(sr_seq_length(cache_.get(), seq_, 0, &n), SR_OK);
    return n;
  }

  static constexpr int64_t kTokens = 40;
  CacheShape shape_;
  ContextPtr ctx_;
  CachePtr cache_;
  sr_seq_id seq_ = -1;
  std::vector<float> k_, v_;
};

TEST_F(StructSizesWithCache, KvIo) {
  sr_kv_io io;
  ASSERT_EQ(sr_kv_io_default(&io, sizeof io), SR_OK);
  io.dtype = SR_DTYPE_F32;
  int64_t total = 0, free_before = 0, free_after = 0;
  ASSERT_EQ(sr_kv_cache_pages(cache_.get(), &total, &free_before), SR_OK);
  const size_t row = static_cast<size_t>(shape_.kv_heads) * shape_.head_dim;
  expect_refused_at_wrong_sizes(io, "sr_kv_io", [&](const sr_kv_io* wrong) {
    const sr_status status = sr_kv_append(cache_.get(), seq_, 0, 1, k_.data(), v_.data(), wrong);
    EXPECT_EQ(length(), kTokens) << "a refused append must append nothing";
    EXPECT_EQ(sr_kv_cache_pages(cache_.get(), &total, &free_after), SR_OK);
    EXPECT_EQ(free_after, free_before);
    return status;
  });
  expect_refused_at_wrong_sizes(io, "sr_kv_io", [&](const sr_kv_io* wrong) {
    std::vector<float> k_out(row, -7.f), v_out(row, -7.f);
    const sr_status status = sr_kv_read(cache_.get(), seq_, 0, 0, 1, k_out.data(), v_out.data(), wrong);
    EXPECT_EQ(k_out, std::vector<float>(row, -7.f)) << "a refused read must leave the output alone";
    EXPECT_EQ(v_out, std::vector<float>(row, -7.f));
    return status;
  });
  std::vector<float> k_out(row), v_out(row);
  ASSERT_EQ(sr_kv_read(cache_.get(), seq_, 0, 0, 1, k_out.data(), v_out.data(), &io), SR_OK) << sr_last_error();
  EXPECT_EQ(k_out, std::vector<float>(k_.begin(), k_.begin() + static_cast<std::ptrdiff_t>(row)));
  ASSERT_EQ(sr_kv_append(cache_.get(), seq_, 0, 1, k_.data(), v_.data(), &io), SR_OK) << sr_last_error();
  EXPECT_EQ(length(), kTokens + 1);
}

TEST_F(StructSizesWithCache, DecodeArgsAndStats) {
  const int32_t q_heads = 4;
  std::mt19937_64 rng(11);
  auto q = gaussian(rng, static_cast<size_t>(q_heads) * shape_.head_dim);
  std::vector<sr_seq_id> seqs = {seq_};
  const std::vector<float> untouched(q.size(), 123.f);
  std::vector<float> out = untouched;
  sr_decode_args a = decode_args(seqs, q_heads, q.data(), out.data());
  a.routing = SR_ROUTING_BUDGET;
  a.error_budget = 1e-3f;
  a.collect_stats = 1;
  expect_refused_at_wrong_sizes(a, "sr_decode_args", [&](const sr_decode_args* wrong) {
    const sr_status status = sr_decode_step(ctx_.get(), cache_.get(), wrong);
    EXPECT_EQ(out, untouched) << "a refused step must leave the output alone";
    return status;
  });

  // Statistics: refused sizes write nothing.
  sr_decode_stats stats;
  for (size_t size : refused_sizes(sizeof stats)) {
    std::vector<unsigned char> bytes(sizeof stats + 16, kPoison);
    EXPECT_REFUSED(sr_context_stats(ctx_.get(), reinterpret_cast<sr_decode_stats*>(bytes.data()), size),
                   "sr_decode_stats", size);
    EXPECT_TRUE(all_poison(bytes.data(), bytes.size())) << "a refused sr_context_stats wrote " << size;
  }

  // A caller of the current version that asks for routing from INT64_MAX tokens on: dense.
  a.route_from_tokens = std::numeric_limits<int64_t>::max();
  ASSERT_EQ(sr_decode_step(ctx_.get(), cache_.get(), &a), SR_OK) << sr_last_error();
  EXPECT_NE(out, untouched);
  ASSERT_EQ(sr_context_stats(ctx_.get(), &stats, sizeof stats), SR_OK) << sr_last_error();
  EXPECT_EQ(stats.steps, 1);
  EXPECT_EQ(stats.steps_run_dense, 1);

  // A v1 caller (0.1.0 header: no route_from_tokens) whose memory after its struct happens to
  // hold the same INT64_MAX: that field is not read, its default (-1: the CPU routes from 0) is.
  const size_t v1_args = struct_sizes<sr_decode_args>::known[0].size;
  ASSERT_LE(v1_args, offsetof(sr_decode_args, route_from_tokens));
  a.struct_size = v1_args;
  out = untouched;
  ASSERT_EQ(sr_decode_step(ctx_.get(), cache_.get(), &a), SR_OK) << sr_last_error();
  EXPECT_NE(out, untouched);
  ASSERT_EQ(sr_context_stats(ctx_.get(), &stats, sizeof stats), SR_OK);
  EXPECT_EQ(stats.steps, 2);
  EXPECT_EQ(stats.steps_run_dense, 1) << "the v1 caller's step was routed: route_from_tokens came from the defaults";

  // A v1 caller of sr_context_stats gets exactly its prefix.
  const size_t v1_stats = struct_sizes<sr_decode_stats>::known[0].size;
  ASSERT_LT(v1_stats, sizeof stats);
  std::vector<unsigned char> bytes(sizeof stats + 16, kPoison);
  ASSERT_EQ(sr_context_stats(ctx_.get(), reinterpret_cast<sr_decode_stats*>(bytes.data()), v1_stats), SR_OK)
      << sr_last_error();
  sr_decode_stats prefix;
  std::memcpy(&prefix, bytes.data(), v1_stats);
  EXPECT_EQ(prefix.struct_size, v1_stats);
  EXPECT_EQ(prefix.steps, 2);
  EXPECT_EQ(prefix.max_error_bound, stats.max_error_bound);
  EXPECT_TRUE(all_poison(bytes.data() + v1_stats, bytes.size() - v1_stats))
      << "sr_context_stats wrote past the caller's struct_size";
}

}  // namespace
}  // namespace sr::testing
