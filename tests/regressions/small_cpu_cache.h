// The setting most regressions start from: a one-thread CPU context and a small f32 cache
// (1 layer, 2 kv-heads, head_dim 64, 64 tokens) holding one sequence of `initial_tokens`.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "sinkrouter/sinkrouter.h"

namespace sr::regressions {

class SmallCpuCache : public ::testing::Test {
 protected:
  explicit SmallCpuCache(int64_t initial_tokens) : initial_tokens_(initial_tokens) {}

  void SetUp() override {
    sr_context_options co;
    sr_context_options_default(&co, sizeof co);
    co.backend = SR_BACKEND_CPU;
    co.num_threads = 1;
    ASSERT_EQ(sr_context_create(&co, &context_), SR_OK) << sr_last_error();
    sr_kv_cache_options o;
    sr_kv_cache_options_default(&o, sizeof o);
    o.num_layers = 1;
    o.num_kv_heads = 2;
    o.head_dim = 64;
    o.capacity_tokens = 64;
    o.dtype = SR_DTYPE_F32;
    ASSERT_EQ(sr_kv_cache_create(context_, &o, &cache_), SR_OK) << sr_last_error();
    ASSERT_EQ(sr_seq_add(cache_, &seq_), SR_OK);
    ASSERT_EQ(sr_kv_append(cache_, seq_, 0, initial_tokens_, rows_.data(), rows_.data(), nullptr), SR_OK)
        << sr_last_error();
  }
  void TearDown() override {
    sr_kv_cache_destroy(cache_);
    sr_context_destroy(context_);
  }

  const int64_t initial_tokens_;
  sr_context* context_ = nullptr;
  sr_kv_cache* cache_ = nullptr;
  sr_seq_id seq_ = 0;
  std::vector<float> rows_ = std::vector<float>(4 * 2 * 64, 0.5f);  // up to 4 tokens x 2 heads x 64
};

}  // namespace sr::regressions
