// What a cache must hold after the calls that succeeded: per sequence its tokens per layer (as
// stored, i.e. rounded to the cache's dtype) and its page table, with pages shared after a fork
// and copied on the first write (the header's copy-on-write contract). Pages are abstract ids:
// the model predicts how many pages are in use, not which.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "sinkrouter/sinkrouter.h"

namespace sr_fuzz {

struct ShadowSequence {
  sr_seq_id id = 0;
  std::vector<int64_t> pages;               // one abstract page id per logical page
  std::vector<std::vector<float>> k, v;     // per layer: [tokens][kv_heads][head_dim]
};

class ShadowCache {
 public:
  explicit ShadowCache(const sr_kv_cache_options& resolved);

  const sr_kv_cache_options& options() const { return options_; }
  int64_t row_elements() const { return static_cast<int64_t>(options_.num_kv_heads) * options_.head_dim; }
  int64_t total_pages() const { return total_pages_; }
  int64_t free_pages() const { return total_pages_ - static_cast<int64_t>(page_refs_.size()); }

  ShadowSequence* find(sr_seq_id id);
  const ShadowSequence* find(sr_seq_id id) const { return const_cast<ShadowCache*>(this)->find(id); }
  const std::vector<ShadowSequence>& sequences() const { return sequences_; }
  bool was_issued(sr_seq_id id) const { return issued_.count(id) != 0; }
  // An id that was issued and since removed, if any.
  bool removed_id(sr_seq_id* out) const;
  int64_t length(const ShadowSequence& s, int32_t layer) const;
  int64_t longest(const ShadowSequence& s) const;

  // Free pages an append needs: new pages past the end, plus copies of shared pages it writes.
  int64_t pages_needed(const ShadowSequence& s, int32_t layer, int64_t n_tokens) const;

  void add(sr_seq_id id);
  void fork(sr_seq_id parent, sr_seq_id child);
  void remove(sr_seq_id id);
  void truncate(sr_seq_id id, int64_t new_length);
  // Appends rows already rounded to the cache's dtype ([n][kv_heads][head_dim] each).
  void append(sr_seq_id id, int32_t layer, const std::vector<float>& k, const std::vector<float>& v);

 private:
  int64_t pages_for(int64_t tokens) const;
  void release(int64_t page);
  int64_t take();

  sr_kv_cache_options options_;
  int64_t total_pages_;
  std::vector<ShadowSequence> sequences_;
  std::map<int64_t, int> page_refs_;  // pages in use and how many sequences hold each
  int64_t next_page_ = 0;
  std::set<sr_seq_id> issued_;
};

}  // namespace sr_fuzz
