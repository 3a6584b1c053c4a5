// The paged cache: append/read round trips in every dtype and layout, fork sharing and
// copy-on-write, truncate, remove and page reuse, and a full pool that leaves everything as it
// was.
#include "test_helpers.h"

namespace sr::testing {
namespace {

int64_t free_pages(const sr_kv_cache* cache) {
  int64_t total = 0, free = 0;
  EXPECT_EQ(sr_kv_cache_pages(cache, &total, &free), SR_OK);
  return free;
}

int64_t length_of(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer = 0) {
  int64_t length = -1;
  EXPECT_EQ(sr_seq_length(cache, seq, layer, &length), SR_OK) << sr_last_error();
  return length;
}

class Cache : public ::testing::TestWithParam<sr_backend> {
 protected:
  void SetUp() override {
    seed_ = fresh_seed();
    rng_.seed(seed_);
    ctx_ = make_context(GetParam());
  }
  std::vector<float> random_rows(int64_t n) { return gaussian(rng_, static_cast<size_t>(n) * shape_.kv_heads * shape_.head_dim); }
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  ContextPtr ctx_;
  CacheShape shape_;
};

TEST_P(Cache, RoundTripF32IsBitExact) {
  shape_.layers = 3;
  auto cache = make_cache(ctx_.get(), shape_);
  sr_seq_id seq;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  auto k = random_rows(100), v = random_rows(100);
  // Appended in uneven pieces across page boundaries, on layer 2 only.
  int64_t done = 0;
  for (int64_t n : {1, 15, 1, 33, 50}) {
    append_f32(cache.get(), seq, 2, n, k.data() + done * 256, v.data() + done * 256);
    done += n;
  }
  EXPECT_EQ(length_of(cache.get(), seq, 2), 100);
  EXPECT_EQ(length_of(cache.get(), seq, 0), 0);
  std::vector<float> k2(k.size()), v2(v.size());
  read_f32(cache.get(), seq, 2, 0, 100, k2.data(), v2.data());
  EXPECT_EQ(k, k2);
  EXPECT_EQ(v, v2);
  std::vector<float> part(10 * 256);
  read_f32(cache.get(), seq, 2, 45, 10, nullptr, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), v.begin() + 45 * 256));
}

TEST_P(Cache, RoundTrip16BitDtypesAndStrides) {
  for (sr_dtype dtype : {SR_DTYPE_BF16, SR_DTYPE_F16}) {
    shape_.dtype = dtype;
    auto cache = make_cache(ctx_.get(), shape_);
    sr_seq_id seq;
    ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
    // Raw 16-bit rows in the cache's own dtype, laid out [kv_head][token][dim].
    const int64_t n = 40;
    std::vector<uint16_t> k(static_cast<size_t>(n) * 256), v(k.size());
    for (auto& x : k) x = static_cast<uint16_t>(rng_() & 0x3fff);  // finite values
    for (auto& x : v) x = static_cast<uint16_t>(rng_() & 0x3fff);
    sr_kv_io io;
    sr_kv_io_default(&io, sizeof io);
    io.token_stride = 128;
    io.head_stride = n * 128;
    ASSERT_EQ(sr_kv_append(cache.get(), seq, 0, n, k.data(), v.data(), &io), SR_OK) << sr_last_error();
    std::vector<uint16_t> k2(k.size()), v2(v.size());
    ASSERT_EQ(sr_kv_read(cache.get(), seq, 0, 0, n, k2.data(), v2.data(), &io), SR_OK);
    EXPECT_EQ(k, k2);
    EXPECT_EQ(v, v2);
    // f32 in, rounded to the cache's dtype: reading back as f32 gives the rounded values.
    auto kf = random_rows(3), vf = random_rows(3);
    append_f32(cache.get(), seq, 0, 3, kf.data(), vf.data());
    std::vector<float> k3(kf.size()), v3(vf.size());
    read_f32(cache.get(), seq, 0, n, 3, k3.data(), v3.data());
    for (size_t i = 0; i < kf.size(); ++i) EXPECT_NEAR(k3[i], kf[i], std::fabs(kf[i]) * 1e-2 + 1e-6);
  }
}

TEST_P(Cache, ForkSharesPagesAndCopiesOnWrite) {
  shape_.capacity = 16 * 20;
  auto cache = make_cache(ctx_.get(), shape_);
  const int64_t total = free_pages(cache.get());
  sr_seq_id parent, child;
  ASSERT_EQ(sr_seq_add(cache.get(), &parent), SR_OK);
  auto k = random_rows(40), v = random_rows(40);
  append_f32(cache.get(), parent, 0, 40, k.data(), v.data());  // pages: 16 + 16 + 8
  EXPECT_EQ(free_pages(cache.get()), total - 3);
  ASSERT_EQ(sr_seq_fork(cache.get(), parent, &child), SR_OK);
  EXPECT_NE(child, parent);
  EXPECT_EQ(free_pages(cache.get()), total - 3) << "a fork shares pages, it copies none";
  EXPECT_EQ(length_of(cache.get(), child), 40);

  // The child writes into the shared, partly filled third page: that page is copied first.
  auto kc = random_rows(1), vc = random_rows(1);
  append_f32(cache.get(), child, 0, 1, kc.data(), vc.data());
  EXPECT_EQ(free_pages(cache.get()), total - 4);
  auto kp = random_rows(1), vp = random_rows(1);
  append_f32(cache.get(), parent, 0, 1, kp.data(), vp.data());
  EXPECT_EQ(free_pages(cache.get()), total - 4) << "the parent's page is no longer shared";

  std::vector<float> got(256);
  read_f32(cache.get(), child, 0, 40, 1, got.data(), nullptr);
  EXPECT_EQ(got, kc);
  read_f32(cache.get(), parent, 0, 40, 1, got.data(), nullptr);
  EXPECT_EQ(got, kp);
  std::vector<float> prefix(40 * 256);
  read_f32(cache.get(), child, 0, 0, 40, prefix.data(), nullptr);
  EXPECT_EQ(prefix, k);

  // Removing the parent keeps the pages the child still holds.
  ASSERT_EQ(sr_seq_remove(cache.get(), parent), SR_OK);
  EXPECT_EQ(free_pages(cache.get()), total - 3);
  read_f32(cache.get(), child, 0, 0, 40, prefix.data(), nullptr);
  EXPECT_EQ(prefix, k);
  ASSERT_EQ(sr_seq_remove(cache.get(), child), SR_OK);
  EXPECT_EQ(free_pages(cache.get()), total);
}

TEST_P(Cache, TruncateRollsBackAndFreesPages) {
  shape_.layers = 2;
  auto cache = make_cache(ctx_.get(), shape_);
  const int64_t total = free_pages(cache.get());
  sr_seq_id seq;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  auto k = random_rows(70), v = random_rows(70);
  append_f32(cache.get(), seq, 0, 70, k.data(), v.data());
  append_f32(cache.get(), seq, 1, 50, k.data(), v.data());
  EXPECT_EQ(free_pages(cache.get()), total - 5);
  EXPECT_EQ(sr_seq_truncate(cache.get(), seq, 71), SR_ERR_OUT_OF_RANGE);
  EXPECT_EQ(sr_seq_truncate(cache.get(), seq, -1), SR_ERR_OUT_OF_RANGE);
  ASSERT_EQ(sr_seq_truncate(cache.get(), seq, 60), SR_OK);
  EXPECT_EQ(length_of(cache.get(), seq, 0), 60);
  EXPECT_EQ(length_of(cache.get(), seq, 1), 50);
  EXPECT_EQ(free_pages(cache.get()), total - 4);
  ASSERT_EQ(sr_seq_truncate(cache.get(), seq, 20), SR_OK);
  EXPECT_EQ(length_of(cache.get(), seq, 1), 20);
  EXPECT_EQ(free_pages(cache.get()), total - 2);
  // Appending after a rollback overwrites the rolled-back tokens.
  auto k2 = random_rows(5), v2 = random_rows(5);
  append_f32(cache.get(), seq, 0, 5, k2.data(), v2.data());
  std::vector<float> got(25 * 256);
  read_f32(cache.get(), seq, 0, 0, 25, got.data(), nullptr);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 20 * 256, k.begin()));
  EXPECT_TRUE(std::equal(got.begin() + 20 * 256, got.end(), k2.begin()));
  ASSERT_EQ(sr_seq_truncate(cache.get(), seq, 0), SR_OK);
  EXPECT_EQ(free_pages(cache.get()), total);
}

// Truncating away a large value row: the bound must still hold for what remains (the page's
// summary shrinks on truncate, and stays an upper bound when the page is shared).
TEST_P(Cache, BoundStaysValidAfterTruncateAndFork) {
  workloads::SyntheticContext gen(workloads::sink_heavy_spec(3000, seed_));
  auto spec = gen.spec();
  shape_.kv_heads = spec.kv_heads;
  auto cache8 = make_cache(ctx_.get(), shape_);
  sr_seq_id seq = append_synthetic(cache8.get(), gen);
  sr_seq_id fork;
  ASSERT_EQ(sr_seq_fork(cache8.get(), seq, &fork), SR_OK);
  ASSERT_EQ(sr_seq_truncate(cache8.get(), seq, 2500), SR_OK);
  ASSERT_EQ(sr_seq_truncate(cache8.get(), fork, 2900), SR_OK);
  auto q = gen.query();
  const int32_t q_heads = spec.kv_heads * spec.group;
  for (sr_seq_id s : {seq, fork}) {
    std::vector<sr_seq_id> seqs = {s};
    std::vector<float> out(q.size()), bound(q_heads);
    sr_decode_args a = decode_args(seqs, q_heads, q.data(), out.data());
    a.routing = SR_ROUTING_TAU;
    a.tau = 6.f;
    a.head_error_bound = bound.data();
    ASSERT_EQ(decode_with_host_buffers(ctx_.get(), cache8.get(), a, 128), SR_OK) << sr_last_error();
    auto ref = reference_outputs(cache8.get(), seqs, 0, q.data(), q_heads, shape_, 1.0 / std::sqrt(128.0));
    auto errors = per_head_errors(out.data(), ref, q_heads, 128);
    for (int32_t h = 0; h < q_heads; ++h) EXPECT_LE(errors[h], bound[h] + 2e-5) << "head " << h;
  }
}

TEST_P(Cache, RemoveReturnsPagesForReuse) {
  shape_.capacity = 16 * 8;
  auto cache = make_cache(ctx_.get(), shape_);
  const int64_t total = free_pages(cache.get());
  auto k = random_rows(64), v = random_rows(64);
  for (int round = 0; round < 5; ++round) {
    sr_seq_id a, b;
    ASSERT_EQ(sr_seq_add(cache.get(), &a), SR_OK);
    ASSERT_EQ(sr_seq_add(cache.get(), &b), SR_OK);
    append_f32(cache.get(), a, 0, 64, k.data(), v.data());
    append_f32(cache.get(), b, 0, 64, v.data(), k.data());
    EXPECT_EQ(free_pages(cache.get()), 0);
    std::vector<float> got(64 * 256);
    read_f32(cache.get(), b, 0, 0, 64, got.data(), nullptr);
    EXPECT_EQ(got, v);
    ASSERT_EQ(sr_seq_remove(cache.get(), a), SR_OK);
    ASSERT_EQ(sr_seq_remove(cache.get(), b), SR_OK);
    EXPECT_EQ(free_pages(cache.get()), total);
    EXPECT_EQ(sr_seq_remove(cache.get(), a), SR_ERR_UNKNOWN_SEQUENCE) << "ids are never reused";
  }
}

TEST_P(Cache, FullPoolChangesNothing) {
  shape_.capacity = 16 * 4;
  auto cache = make_cache(ctx_.get(), shape_);
  sr_seq_id seq, other;
  ASSERT_EQ(sr_seq_add(cache.get(), &seq), SR_OK);
  ASSERT_EQ(sr_seq_add(cache.get(), &other), SR_OK);
  auto k = random_rows(80), v = random_rows(80);
  append_f32(cache.get(), seq, 0, 40, k.data(), v.data());  // 3 pages
  const int64_t free_before = free_pages(cache.get());
  std::vector<float> before(40 * 256);
  read_f32(cache.get(), seq, 0, 0, 40, before.data(), nullptr);

  sr_kv_io io;
  sr_kv_io_default(&io, sizeof io);
  io.dtype = SR_DTYPE_F32;
  EXPECT_EQ(sr_kv_append(cache.get(), seq, 0, 30, k.data(), v.data(), &io), SR_ERR_CACHE_FULL);
  EXPECT_NE(std::string(sr_last_error()).find("free pages"), std::string::npos) << sr_last_error();
  EXPECT_EQ(length_of(cache.get(), seq), 40);
  EXPECT_EQ(free_pages(cache.get()), free_before);
  std::vector<float> after(40 * 256);
  read_f32(cache.get(), seq, 0, 0, 40, after.data(), nullptr);
  EXPECT_EQ(before, after);

  // Copy-on-write needs a page too: with the pool empty, the write into a shared page fails
  // and both sequences keep what they had.
  append_f32(cache.get(), other, 0, 16, k.data(), v.data());  // takes the last page
  EXPECT_EQ(free_pages(cache.get()), 0);
  sr_seq_id child;
  ASSERT_EQ(sr_seq_fork(cache.get(), seq, &child), SR_OK);
  EXPECT_EQ(sr_kv_append(cache.get(), child, 0, 1, k.data(), v.data(), &io), SR_ERR_CACHE_FULL);
  EXPECT_EQ(length_of(cache.get(), child), 40);
  read_f32(cache.get(), child, 0, 0, 40, after.data(), nullptr);
  EXPECT_EQ(before, after);
  // Once a page is free again the same append succeeds.
  ASSERT_EQ(sr_seq_remove(cache.get(), other), SR_OK);
  EXPECT_EQ(sr_kv_append(cache.get(), child, 0, 1, k.data(), v.data(), &io), SR_OK);
  read_f32(cache.get(), seq, 0, 0, 40, after.data(), nullptr);
  EXPECT_EQ(before, after) << "the parent must not see the child's write";
}

INSTANTIATE_TEST_SUITE_P(Backends, Cache, ::testing::ValuesIn(test_backends()), backend_param_name);

}  // namespace
}  // namespace sr::testing
