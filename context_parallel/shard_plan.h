// Which tokens of one sequence each rank of a context-parallel group holds (README.md here).
#pragma once

#include <cstdint>
#include <vector>

namespace sr::cp {

struct TokenRange {
  int64_t begin, end;  // tokens [begin, end) of the sequence
};

// `ranks` contiguous ranges covering [0, length), cut at page boundaries and as equal in pages
// as they can be (the first ranks take one page more): rank 0 holds the first tokens (the
// sinks), the last rank the most recent ones, where a decode appends. A rank may hold nothing
// when the sequence has fewer pages than ranks. ranks >= 1, page_tokens >= 1, length >= 0.
std::vector<TokenRange> plan_shards(int64_t length, int32_t ranks, int32_t page_tokens);

}  // namespace sr::cp
