// Loader for ../shared/data/realattn: K/V caches and decode queries captured from a trained
// model (8 layers, 2 kv-heads, 4 q-heads, head_dim 128, 4096 tokens, bf16).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sr::workloads {

struct RealAttnLayer {
  static constexpr int32_t kKvHeads = 2, kQHeads = 4, kHeadDim = 128, kTokens = 4096, kQueries = 32;
  static constexpr int64_t kFirstQueryPosition = 4064;
  // Raw bf16 bits. k and v: [kv_head][token][dim]; q: [query][q_head][dim].
  std::vector<uint16_t> k, v, q;
};

// The data folder: $SINKROUTER_REALATTN_DIR, else the first of a few places relative to the
// current directory and the source tree that holds manifest.json. "" if none.
std::string find_realattn_dir();

// Loads seq0_layer<layer>; throws std::runtime_error with the path on failure.
RealAttnLayer load_realattn_layer(const std::string& dir, int32_t layer);

}  // namespace sr::workloads
