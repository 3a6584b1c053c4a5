#include "core/kv_cache.h"

#include <algorithm>

#include "core/errors.h"

namespace sr {

int64_t Sequence::longest() const {
  int64_t longest = 0;
  for (int64_t length : lengths) longest = std::max(longest, length);
  return longest;
}

Sequence& find_sequence(sr_kv_cache& cache, sr_seq_id id) {
  auto it = cache.sequences.find(id);
  if (it == cache.sequences.end()) {
    fail(SR_ERR_UNKNOWN_SEQUENCE, "sequence %lld is not in this cache (never added, or removed)",
         static_cast<long long>(id));
  }
  return it->second;
}

const Sequence& find_sequence(const sr_kv_cache& cache, sr_seq_id id) {
  return find_sequence(const_cast<sr_kv_cache&>(cache), id);
}

void check_layer(const sr_kv_cache& cache, int32_t layer) {
  if (layer < 0 || layer >= cache.geometry.num_layers) {
    fail(SR_ERR_OUT_OF_RANGE, "layer = %d is out of range [0, %d)", layer, cache.geometry.num_layers);
  }
}

namespace {

// Tell a backend that mirrors page tables on its device what changed.
void publish(sr_kv_cache& cache, const Sequence& seq, bool removed = false) {
  const sr_backend_i* be = cache.context->iface;
  if (!be->sequence_update) return;
  sr_backend_error err{};
  check_backend(be->sequence_update(cache.storage, seq.slot, removed ? nullptr : seq.pages.data(),
                                    removed ? 0 : static_cast<int64_t>(seq.pages.size()),
                                    removed ? nullptr : seq.lengths.data(), &err),
                err, "updating the device page table");
}

int64_t pages_for(const sr_kv_cache& cache, int64_t tokens) {
  return (tokens + cache.geometry.page_tokens - 1) / cache.geometry.page_tokens;
}

void release_page(sr_kv_cache& cache, int32_t page) {
  if (--cache.page_refs[page] == 0) cache.free_pages.push_back(page);
}

int32_t take_page(sr_kv_cache& cache) {
  int32_t page = cache.free_pages.back();
  cache.free_pages.pop_back();
  cache.page_refs[page] = 1;
  return page;
}

int64_t take_slot(sr_kv_cache& cache) {
  if (!cache.free_slots.empty()) {
    int64_t slot = cache.free_slots.back();
    cache.free_slots.pop_back();
    return slot;
  }
  return cache.next_slot++;
}

sr_seq_id insert_sequence(sr_kv_cache& cache, Sequence seq) {
  cache.free_slots.reserve(cache.free_slots.size() + 1);  // so remove can never fail to recycle
  seq.slot = take_slot(cache);
  sr_seq_id id = cache.next_id;
  try {
    cache.sequences.emplace(id, std::move(seq));
  } catch (...) {
    cache.free_slots.push_back(seq.slot);
    throw;
  }
  ++cache.next_id;
  return id;
}

}  // namespace

sr_seq_id add_sequence(sr_kv_cache& cache) {
  Sequence seq;
  seq.lengths.assign(cache.geometry.num_layers, 0);
  sr_seq_id id = insert_sequence(cache, std::move(seq));
  try {
    publish(cache, cache.sequences.at(id));
  } catch (...) {
    cache.free_slots.push_back(cache.sequences.at(id).slot);
    cache.sequences.erase(id);
    throw;
  }
  return id;
}

sr_seq_id fork_sequence(sr_kv_cache& cache, sr_seq_id parent) {
  Sequence child = find_sequence(cache, parent);  // copies pages and lengths
  sr_seq_id id = insert_sequence(cache, std::move(child));
  Sequence& seq = cache.sequences.at(id);
  try {
    publish(cache, seq);
  } catch (...) {
    cache.free_slots.push_back(seq.slot);
    cache.sequences.erase(id);
    throw;
  }
  for (int32_t page : seq.pages) ++cache.page_refs[page];
  return id;
}

void remove_sequence(sr_kv_cache& cache, sr_seq_id id) {
  Sequence& seq = find_sequence(cache, id);
  publish(cache, seq, /*removed=*/true);
  cache.free_pages.reserve(cache.free_pages.size() + seq.pages.size());
  for (int32_t page : seq.pages) release_page(cache, page);
  cache.free_slots.push_back(seq.slot);
  cache.sequences.erase(id);
}

void truncate_sequence(sr_kv_cache& cache, sr_seq_id id, int64_t new_length) {
  Sequence& seq = find_sequence(cache, id);
  int64_t longest = seq.longest();
  if (new_length < 0 || new_length > longest) {
    fail(SR_ERR_OUT_OF_RANGE, "new_length = %lld is out of range [0, %lld] for sequence %lld",
         static_cast<long long>(new_length), static_cast<long long>(longest), static_cast<long long>(id));
  }
  const sr_backend_i* be = cache.context->iface;
  const int32_t PT = cache.geometry.page_tokens;
  int64_t keep_pages = pages_for(cache, new_length);
  cache.free_pages.reserve(cache.free_pages.size() + seq.pages.size());
  Sequence updated = seq;
  updated.pages.resize(static_cast<size_t>(keep_pages));
  for (int64_t& length : updated.lengths) length = std::min(length, new_length);
  // The new lengths first: a summary must never shrink while rows past the kept ones can still
  // be read (the bound would undercount), and until here a failure has changed nothing.
  publish(cache, updated);
  for (size_t i = static_cast<size_t>(keep_pages); i < seq.pages.size(); ++i) release_page(cache, seq.pages[i]);
  const Sequence before = std::move(seq);
  seq = std::move(updated);
  // A partly kept page loses tokens: its V-norm summaries shrink to the kept rows (a summary
  // left larger is still a valid bound, only looser). A page another sequence shares keeps its
  // larger summary, which still bounds this one. (docs/ARCHITECTURE.md, "Per-page summaries")
  if (new_length % PT != 0) {
    int32_t page = seq.pages[keep_pages - 1];
    if (cache.page_refs[page] == 1) {
      for (int32_t layer = 0; layer < cache.geometry.num_layers; ++layer) {
        if (before.lengths[layer] <= new_length) continue;
        sr_backend_error err{};
        check_backend(be->trim_page(cache.storage, layer, page, static_cast<int32_t>(new_length % PT), &err), err,
                      "truncate");
      }
    }
  }
}

void append_tokens(sr_kv_cache& cache, sr_seq_id id, int32_t layer, int64_t n_tokens, const void* k,
                   const void* v, const sr_kv_io& io) {
  Sequence& seq = find_sequence(cache, id);
  const int32_t PT = cache.geometry.page_tokens;
  const int64_t old_length = seq.lengths[layer];
  const int64_t new_length = old_length + n_tokens;
  const int64_t first_page = old_length / PT;
  const int64_t end_page = pages_for(cache, new_length);
  const int64_t have = static_cast<int64_t>(seq.pages.size());

  // Pages to write that another sequence shares are copied first (copy-on-write).
  std::vector<int64_t> shared;
  for (int64_t i = first_page; i < std::min(end_page, have); ++i) {
    if (cache.page_refs[seq.pages[i]] > 1) shared.push_back(i);
  }
  int64_t fresh = std::max<int64_t>(0, end_page - have);
  int64_t needed = fresh + static_cast<int64_t>(shared.size());
  if (needed > static_cast<int64_t>(cache.free_pages.size())) {
    fail(SR_ERR_CACHE_FULL,
         "appending %lld tokens to layer %d of sequence %lld needs %lld free pages, but the pool has %zu "
         "left of %lld",
         static_cast<long long>(n_tokens), layer, static_cast<long long>(id), static_cast<long long>(needed),
         cache.free_pages.size(), static_cast<long long>(cache.geometry.num_pages));
  }

  // Reserve, then commit; on a backend failure undo to exactly the old state.
  const sr_backend_i* be = cache.context->iface;
  std::vector<int32_t> old_pages = seq.pages;
  seq.pages.reserve(static_cast<size_t>(end_page));
  std::vector<int32_t> taken;
  taken.reserve(static_cast<size_t>(needed));
  cache.free_pages.reserve(cache.free_pages.size() + static_cast<size_t>(needed));
  auto undo = [&] {
    for (int32_t page : taken) release_page(cache, page);
    seq.pages = old_pages;
  };
  try {
    for (int64_t i : shared) {
      int32_t copy = take_page(cache);
      taken.push_back(copy);
      sr_backend_error err{};
      check_backend(be->copy_page(cache.storage, seq.pages[i], copy, &err), err, "copy-on-write");
      seq.pages[i] = copy;
    }
    for (int64_t i = 0; i < fresh; ++i) {
      taken.push_back(take_page(cache));
      seq.pages.push_back(taken.back());
    }
    sr_backend_error err{};
    check_backend(be->write_tokens(cache.storage, layer, seq.pages.data(), old_length, n_tokens, k, v,
                                   &io, &err),
                  err, "append");
    seq.lengths[layer] = new_length;
    publish(cache, seq);
  } catch (...) {
    seq.lengths[layer] = old_length;
    undo();
    throw;
  }
  // The copies replaced shared pages: this sequence lets go of the originals.
  for (int64_t i : shared) release_page(cache, old_pages[i]);
}

void read_tokens(const sr_kv_cache& cache, sr_seq_id id, int32_t layer, int64_t first, int64_t n_tokens, void* k,
                 void* v, const sr_kv_io& io) {
  const Sequence& seq = find_sequence(cache, id);
  int64_t length = seq.lengths[layer];
  if (first < 0 || n_tokens < 1 || first > length - n_tokens) {
    // The range's end is printed only where first + n_tokens cannot overflow.
    if (first <= INT64_MAX - n_tokens) {
      fail(SR_ERR_OUT_OF_RANGE, "tokens [%lld, %lld) are out of range: layer %d of sequence %lld holds %lld tokens",
           static_cast<long long>(first), static_cast<long long>(first + n_tokens), layer, static_cast<long long>(id),
           static_cast<long long>(length));
    }
    fail(SR_ERR_OUT_OF_RANGE,
         "%lld tokens from token %lld are out of range: layer %d of sequence %lld holds %lld tokens",
         static_cast<long long>(n_tokens), static_cast<long long>(first), layer,
         static_cast<long long>(id), static_cast<long long>(length));
  }
  const sr_backend_i* be = cache.context->iface;
  sr_backend_error err{};
  check_backend(be->read_tokens(cache.storage, layer, seq.pages.data() + first / cache.geometry.page_tokens, first,
                                n_tokens, k, v, &io, &err),
                err, "read");
}

}  // namespace sr
