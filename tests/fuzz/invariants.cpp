// After every call: each live cache agrees with its shadow model, seen through the public API
// only (page counts, every sequence's length per layer, and the stored K/V read back).
#include <cstring>
#include <vector>

#include "harness.h"

namespace sr_fuzz {

void Harness::check_all_caches() {
  for (CacheSlot& slot : caches_) {
    if (slot.handle) check_cache(slot, slot.contents_dirty);
  }
}

void Harness::check_cache(CacheSlot& slot, bool contents) {
  const ShadowCache& model = *slot.model;
  int64_t total = -1, free_pages = -1;
  sr_status st = sr_kv_cache_pages(slot.handle, &total, &free_pages);
  FUZZ_CHECK(st == SR_OK, "sr_kv_cache_pages failed: %s", sr_last_error());
  FUZZ_CHECK(total == model.total_pages() && free_pages == model.free_pages(),
             "pages: library reports %lld total / %lld free, the model %lld / %lld", static_cast<long long>(total),
             static_cast<long long>(free_pages), static_cast<long long>(model.total_pages()),
             static_cast<long long>(model.free_pages()));

  const int32_t layers = model.options().num_layers;
  const int64_t row = model.row_elements();
  std::vector<float> k, v;
  for (const ShadowSequence& s : model.sequences()) {
    for (int32_t layer = 0; layer < layers; ++layer) {
      int64_t length = -1;
      st = sr_seq_length(slot.handle, s.id, layer, &length);
      FUZZ_CHECK(st == SR_OK, "sr_seq_length(seq %lld, layer %d) failed: %s", static_cast<long long>(s.id), layer,
                 sr_last_error());
      FUZZ_CHECK(length == model.length(s, layer), "seq %lld layer %d: library length %lld, model %lld",
                 static_cast<long long>(s.id), layer, static_cast<long long>(length),
                 static_cast<long long>(model.length(s, layer)));
      if (!contents || length == 0) continue;
      k.assign(static_cast<size_t>(length * row), -7.f);
      v.assign(static_cast<size_t>(length * row), -7.f);
      sr_kv_io io;
      sr_kv_io_default(&io, sizeof io);
      io.dtype = SR_DTYPE_F32;
      st = sr_kv_read(slot.handle, s.id, layer, 0, length, k.data(), v.data(), &io);
      FUZZ_CHECK(st == SR_OK, "reading back seq %lld layer %d failed: %s", static_cast<long long>(s.id), layer,
                 sr_last_error());
      for (size_t i = 0; i < k.size(); ++i) {
        FUZZ_CHECK(std::memcmp(&k[i], &s.k[layer][i], sizeof(float)) == 0 &&
                       std::memcmp(&v[i], &s.v[layer][i], sizeof(float)) == 0,
                   "seq %lld layer %d token %lld element %lld: read back K %a V %a, appended (as stored) K %a V %a",
                   static_cast<long long>(s.id), layer, static_cast<long long>(i / row),
                   static_cast<long long>(i % row), k[i], v[i], s.k[layer][i], s.v[layer][i]);
      }
    }
  }
  if (contents) slot.contents_dirty = false;
}

}  // namespace sr_fuzz
