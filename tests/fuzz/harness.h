// State of one fuzz input: the handles it opened, the shadow model of every cache, and the
// helpers each call family uses to pick arguments and check results. A violated invariant
// prints what was expected and traps, so libFuzzer records the input as a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "byte_reader.h"
#include "shadow_model.h"
#include "sinkrouter/sinkrouter.h"

namespace sr_fuzz {

[[noreturn]] void violation(const char* file, int line, const char* format, ...) __attribute__((format(printf, 3, 4)));
#define FUZZ_CHECK(cond, ...)                                  \
  do {                                                         \
    if (!(cond)) ::sr_fuzz::violation(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

// Which statuses a call may return, built from its arguments: every argument the header rules
// out adds the codes it may fail with; an argument the header leaves open allows anything.
class Expectation {
 public:
  void must_fail(std::initializer_list<sr_status> codes);
  void unsure() { unsure_ = true; }
  bool expects_success() const { return reasons_ == 0 && !unsure_; }
  bool expects_failure() const { return reasons_ > 0; }
  // Checks the status (and that a failure left a message); returns whether the call succeeded.
  bool check(sr_status got, const char* call) const;

 private:
  int reasons_ = 0;
  uint32_t codes_ = 0;  // bit per sr_status
  bool unsure_ = false;
};

constexpr int kContextSlots = 2;
constexpr int kCacheSlots = 3;

struct ContextSlot {
  sr_context* handle = nullptr;
  int32_t threads = 0;
  int64_t stats_steps = 0;  // what sr_context_stats must report
  int64_t stats_heads = 0;
  int64_t stats_run_dense = 0;   // routed steps below route_from_tokens
  bool run_dense_known = true;   // false after a step whose backend threshold the harness can't know
};

struct CacheSlot {
  sr_kv_cache* handle = nullptr;
  int context_slot = -1;
  std::unique_ptr<ShadowCache> model;
  bool contents_dirty = false;  // a call that could change contents ran since the last check
};

// Deterministic values for K, V and q: the input gives a seed and a style, not every element.
class ValueSource {
 public:
  ValueSource(uint64_t seed, uint8_t style) : state_(seed * 0x9E3779B97F4A7C15ull + 1), style_(style % 5) {}
  float next();

 private:
  uint64_t bits();
  uint64_t state_;
  uint8_t style_;
};

class Harness {
 public:
  explicit Harness(ByteReader& in) : in_(in) {}
  ~Harness();  // checks every cache's contents, then frees everything
  void step();

 private:
  // Call families (one file each).
  void context_create();
  void context_destroy();
  void cache_create();
  void cache_destroy();
  void seq_add();
  void seq_fork();
  void seq_remove();
  void seq_truncate();
  void kv_append();
  void kv_read();
  void decode_step();
  void stats();
  void queries();
  void struct_defaults();
  void merge_states();

  // Invariants after every call (invariants.cpp).
  void check_all_caches();
  void check_cache(CacheSlot& slot, bool contents);

  // Argument pickers: mostly valid values, with the edge cases the header rules out mixed in.
  CacheSlot* pick_cache();
  ContextSlot* pick_context();
  sr_seq_id pick_sequence(CacheSlot& slot, Expectation& e);
  int32_t pick_layer(const CacheSlot& slot, Expectation& e);
  size_t pick_struct_size(size_t good, Expectation& e);
  static int64_t edge_int64(uint8_t which);

  ByteReader& in_;
  ContextSlot contexts_[kContextSlots];
  CacheSlot caches_[kCacheSlots];
  uint64_t calls_ = 0;
};

}  // namespace sr_fuzz
