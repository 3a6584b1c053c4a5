#include "shadow_model.h"

#include <algorithm>

namespace sr_fuzz {

ShadowCache::ShadowCache(const sr_kv_cache_options& resolved)
    : options_(resolved),
      total_pages_((resolved.capacity_tokens + resolved.page_tokens - 1) / resolved.page_tokens) {}

ShadowSequence* ShadowCache::find(sr_seq_id id) {
  for (ShadowSequence& s : sequences_) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

bool ShadowCache::removed_id(sr_seq_id* out) const {
  for (sr_seq_id id : issued_) {
    if (std::none_of(sequences_.begin(), sequences_.end(), [&](const ShadowSequence& s) { return s.id == id; })) {
      *out = id;
      return true;
    }
  }
  return false;
}

int64_t ShadowCache::length(const ShadowSequence& s, int32_t layer) const {
  return static_cast<int64_t>(s.k[layer].size()) / row_elements();
}

int64_t ShadowCache::longest(const ShadowSequence& s) const {
  int64_t longest = 0;
  for (int32_t layer = 0; layer < options_.num_layers; ++layer) longest = std::max(longest, length(s, layer));
  return longest;
}

int64_t ShadowCache::pages_for(int64_t tokens) const { return (tokens + options_.page_tokens - 1) / options_.page_tokens; }

int64_t ShadowCache::pages_needed(const ShadowSequence& s, int32_t layer, int64_t n_tokens) const {
  const int64_t old_length = length(s, layer);
  const int64_t first_page = old_length / options_.page_tokens;
  const int64_t end_page = pages_for(old_length + n_tokens);
  const int64_t have = static_cast<int64_t>(s.pages.size());
  int64_t needed = std::max<int64_t>(0, end_page - have);
  for (int64_t i = first_page; i < std::min(end_page, have); ++i) {
    if (page_refs_.at(s.pages[i]) > 1) ++needed;
  }
  return needed;
}

void ShadowCache::release(int64_t page) {
  if (--page_refs_.at(page) == 0) page_refs_.erase(page);
}

int64_t ShadowCache::take() {
  page_refs_[next_page_] = 1;
  return next_page_++;
}

void ShadowCache::add(sr_seq_id id) {
  ShadowSequence s;
  s.id = id;
  s.k.resize(options_.num_layers);
  s.v.resize(options_.num_layers);
  sequences_.push_back(std::move(s));
  issued_.insert(id);
}

void ShadowCache::fork(sr_seq_id parent, sr_seq_id child) {
  ShadowSequence copy = *find(parent);
  copy.id = child;
  for (int64_t page : copy.pages) ++page_refs_.at(page);
  sequences_.push_back(std::move(copy));
  issued_.insert(child);
}

void ShadowCache::remove(sr_seq_id id) {
  auto it = std::find_if(sequences_.begin(), sequences_.end(), [&](const ShadowSequence& s) { return s.id == id; });
  for (int64_t page : it->pages) release(page);
  sequences_.erase(it);
}

void ShadowCache::truncate(sr_seq_id id, int64_t new_length) {
  ShadowSequence& s = *find(id);
  for (int32_t layer = 0; layer < options_.num_layers; ++layer) {
    size_t keep = static_cast<size_t>(std::min(length(s, layer), new_length) * row_elements());
    s.k[layer].resize(keep);
    s.v[layer].resize(keep);
  }
  const size_t keep_pages = static_cast<size_t>(pages_for(new_length));
  for (size_t i = keep_pages; i < s.pages.size(); ++i) release(s.pages[i]);
  s.pages.resize(std::min(keep_pages, s.pages.size()));
}

void ShadowCache::append(sr_seq_id id, int32_t layer, const std::vector<float>& k, const std::vector<float>& v) {
  ShadowSequence& s = *find(id);
  const int64_t n_tokens = static_cast<int64_t>(k.size()) / row_elements();
  const int64_t old_length = length(s, layer);
  const int64_t first_page = old_length / options_.page_tokens;
  const int64_t end_page = pages_for(old_length + n_tokens);
  for (int64_t i = first_page; i < std::min<int64_t>(end_page, static_cast<int64_t>(s.pages.size())); ++i) {
    if (page_refs_.at(s.pages[i]) > 1) {
      release(s.pages[i]);
      s.pages[i] = take();
    }
  }
  while (static_cast<int64_t>(s.pages.size()) < end_page) s.pages.push_back(take());
  s.k[layer].insert(s.k[layer].end(), k.begin(), k.end());
  s.v[layer].insert(s.v[layer].end(), v.begin(), v.end());
}

}  // namespace sr_fuzz
