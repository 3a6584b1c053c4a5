#include "shard_plan.h"

#include <cstddef>

namespace sr::cp {

std::vector<TokenRange> plan_shards(int64_t length, int32_t ranks, int32_t page_tokens) {
  std::vector<TokenRange> ranges(static_cast<size_t>(ranks));
  const int64_t pages = (length + page_tokens - 1) / page_tokens;
  int64_t page = 0;
  for (int32_t r = 0; r < ranks; ++r) {
    const int64_t share = pages / ranks + (r < pages % ranks ? 1 : 0);
    const int64_t begin = page * page_tokens;
    page += share;
    const int64_t end = page * page_tokens < length ? page * page_tokens : length;
    ranges[static_cast<size_t>(r)] = TokenRange{begin < length ? begin : length, end};
  }
  return ranges;
}

}  // namespace sr::cp
