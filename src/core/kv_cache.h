// The cache handle: sequences, their page tables and per-layer lengths, and the page pool's
// free list and reference counts (pages are shared after a fork). The backend holds the page
// contents. Every change is all-or-nothing: it checks and reserves first, then commits.
#pragma once

#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "core/context.h"

namespace sr {

struct Sequence {
  std::vector<int32_t> pages;    // physical page of each logical page
  std::vector<int64_t> lengths;  // tokens per layer
  int64_t slot = 0;              // small stable index (GPU page tables are indexed by it)
  int64_t longest() const;
};

}  // namespace sr

struct sr_kv_cache {
  sr_context* context = nullptr;
  sr_kv_cache_options options{};
  sr_cache_geometry geometry{};
  sr_backend_storage* storage = nullptr;

  mutable std::shared_mutex mutex;  // exclusive for changes, shared for decode and reads
  std::vector<int32_t> free_pages;  // a stack; top is reused first
  std::vector<int32_t> page_refs;   // sequences holding each page
  std::unordered_map<sr_seq_id, sr::Sequence> sequences;
  std::vector<int64_t> free_slots;
  int64_t next_slot = 0;
  sr_seq_id next_id = 1;
};

namespace sr {

// Lookups that throw SR_ERR_UNKNOWN_SEQUENCE / SR_ERR_OUT_OF_RANGE with a message.
Sequence& find_sequence(sr_kv_cache& cache, sr_seq_id id);
const Sequence& find_sequence(const sr_kv_cache& cache, sr_seq_id id);
void check_layer(const sr_kv_cache& cache, int32_t layer);

sr_seq_id add_sequence(sr_kv_cache& cache);
sr_seq_id fork_sequence(sr_kv_cache& cache, sr_seq_id parent);
void remove_sequence(sr_kv_cache& cache, sr_seq_id id);
void truncate_sequence(sr_kv_cache& cache, sr_seq_id id, int64_t new_length);
void append_tokens(sr_kv_cache& cache, sr_seq_id id, int32_t layer, int64_t n_tokens, const void* k,
                   const void* v, const sr_kv_io& io);
void read_tokens(const sr_kv_cache& cache, sr_seq_id id, int32_t layer, int64_t first, int64_t n_tokens,
                 void* k, void* v, const sr_kv_io& io);

}  // namespace sr
