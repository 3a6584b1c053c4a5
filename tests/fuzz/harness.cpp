// The call dispatcher, argument pickers and status expectations shared by every call family.
#include "harness.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace sr_fuzz {

// SR_FUZZ_TRACE=1 prints every step's call family and every checked status (make_corpus.py
// --count reads the former).
const bool kTrace = std::getenv("SR_FUZZ_TRACE") != nullptr;

void violation(const char* file, int line, const char* format, ...) {
  std::fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: ", file, line);
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  __builtin_trap();
}

void Expectation::must_fail(std::initializer_list<sr_status> codes) {
  ++reasons_;
  for (sr_status code : codes) codes_ |= 1u << code;
}

bool Expectation::check(sr_status got, const char* call) const {
  if (kTrace) std::fprintf(stderr, "  %s -> %s %s\n", call, sr_status_string(got), got ? sr_last_error() : "");
  if (got != SR_OK) {
    const char* message = sr_last_error();
    FUZZ_CHECK(message != nullptr && message[0] != '\0', "%s failed with %s but sr_last_error() is empty", call,
               sr_status_string(got));
  }
  if (reasons_ > 0) {
    FUZZ_CHECK(got != SR_OK, "%s succeeded, but an argument the header rules out was passed", call);
    FUZZ_CHECK(unsure_ || (static_cast<unsigned>(got) < 32u && (codes_ >> static_cast<unsigned>(got) & 1u)), "%s failed with %s (%s), not a status its argument "
               "errors allow (mask 0x%x)", call, sr_status_string(got), sr_last_error(), codes_);
  } else if (!unsure_) {
    FUZZ_CHECK(got == SR_OK, "%s failed with %s on valid arguments: %s", call, sr_status_string(got), sr_last_error());
  }
  return got == SR_OK;
}

uint64_t ValueSource::bits() {
  // splitmix64
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float ValueSource::next() {
  uint64_t r = bits();
  double unit = static_cast<double>(r >> 11) * 0x1.0p-53 * 2.0 - 1.0;  // [-1, 1)
  switch (style_) {
    case 0: return static_cast<float>(unit * 2.0);
    case 1: return static_cast<float>(std::ldexp(unit, -20 - static_cast<int>(r & 7)));  // f16 subnormals
    case 2: return static_cast<float>(static_cast<int>(r % 9) - 4);
    case 3: return static_cast<float>(unit * 4.0 + ((r & 3) == 0 ? 0.5 : 0.0));
    default: return static_cast<float>(std::ldexp(unit, -130));  // f32 and bf16 subnormals
  }
}

int64_t Harness::edge_int64(uint8_t which) {
  switch (which % 8) {
    case 0: return 0;
    case 1: return -1;
    case 2: return std::numeric_limits<int64_t>::max();
    case 3: return std::numeric_limits<int64_t>::min();
    case 4: return int64_t{1} << 31;
    case 5: return int64_t{1} << 62;
    case 6: return std::numeric_limits<int64_t>::max() - 15;
    default: return -(int64_t{1} << 40);
  }
}

CacheSlot* Harness::pick_cache() { return &caches_[in_.u8() % kCacheSlots]; }
ContextSlot* Harness::pick_context() { return &contexts_[in_.u8() % kContextSlots]; }

// Byte < 0xF0: a live sequence (if any); else a removed id, an id never issued, or an edge value.
sr_seq_id Harness::pick_sequence(CacheSlot& slot, Expectation& e) {
  uint8_t b = in_.u8();
  const auto& live = slot.model->sequences();
  if (b < 0xF0 && !live.empty()) return live[b % live.size()].id;
  sr_seq_id id = 0;
  if (b == 0xF1 && slot.model->removed_id(&id)) {
    // removed: unknown from now on
  } else if (b >= 0xF8) {
    id = static_cast<sr_seq_id>(in_.u64());
  } else {
    id = b < 0xF0 ? 1000003 : (b & 1 ? edge_int64(b) : 1000003 + b);
  }
  if (!slot.model->find(id)) e.must_fail({SR_ERR_UNKNOWN_SEQUENCE});
  return id;
}

int32_t Harness::pick_layer(const CacheSlot& slot, Expectation& e) {
  uint8_t b = in_.u8();
  const int32_t layers = slot.model->options().num_layers;
  if (b < 0xF0) return b % layers;
  int32_t layer;
  switch (b) {
    case 0xF0: layer = layers; break;
    case 0xF1: layer = -1; break;
    case 0xF2: layer = std::numeric_limits<int32_t>::min(); break;
    default: layer = std::numeric_limits<int32_t>::max(); break;
  }
  e.must_fail({SR_ERR_OUT_OF_RANGE});
  return layer;
}

// Mostly the right size; sometimes one the library cannot know (too small or from the future).
size_t Harness::pick_struct_size(size_t good, Expectation& e) {
  switch (in_.u8() % 16) {
    case 1: e.must_fail({SR_ERR_STRUCT_SIZE}); return 0;
    case 2: e.must_fail({SR_ERR_STRUCT_SIZE}); return good + 8;
    case 3: e.must_fail({SR_ERR_STRUCT_SIZE}); return ~size_t{0};
    case 4: e.unsure(); return good - 4;  // an older, shorter version may be accepted
    default: return good;
  }
}

const char* const kCallNames[15] = {"context_create", "context_destroy", "cache_create", "cache_destroy",
                                    "seq_add",        "seq_fork",        "seq_remove",   "seq_truncate",
                                    "kv_append",      "kv_read",         "decode_step",  "stats",
                                    "queries",        "struct_defaults", "merge_states"};

void Harness::step() {
  ++calls_;
  // 14 families by the byte's residue; two of struct_defaults' bytes (237, 251) merge states
  // instead, so the corpus found before the merge call keeps its meaning.
  const uint8_t selector = in_.u8();
  const int call = selector % 14 == 13 && selector >= 0xE0 ? 14 : selector % 14;
  if (kTrace) std::fprintf(stderr, "SR_FUZZ_CALL %s\n", kCallNames[call]);
  switch (call) {
    case 0: context_create(); break;
    case 1: context_destroy(); break;
    case 2: cache_create(); break;
    case 3: cache_destroy(); break;
    case 4: seq_add(); break;
    case 5: seq_fork(); break;
    case 6: seq_remove(); break;
    case 7: seq_truncate(); break;
    case 8: kv_append(); break;
    case 9: kv_read(); break;
    case 10: decode_step(); break;
    case 11: stats(); break;
    case 12: queries(); break;
    case 13: struct_defaults(); break;
    default: merge_states(); break;
  }
  check_all_caches();
}

Harness::~Harness() {
  for (CacheSlot& slot : caches_) {
    if (slot.handle) {
      check_cache(slot, /*contents=*/true);
      sr_kv_cache_destroy(slot.handle);
    }
  }
  for (ContextSlot& slot : contexts_) sr_context_destroy(slot.handle);
}

}  // namespace sr_fuzz
