// Contexts, caches and sequences: create, destroy, add, fork, remove, truncate.
#include <algorithm>
#include <limits>

#include "c_callers.h"
#include "harness.h"

namespace sr_fuzz {
namespace {

sr_context* const kUntouchedContext = reinterpret_cast<sr_context*>(uintptr_t{0x5A5A5A50});
sr_kv_cache* const kUntouchedCache = reinterpret_cast<sr_kv_cache*>(uintptr_t{0x5A5A5A60});
constexpr sr_seq_id kUntouchedSeq = -424242;

}  // namespace

void Harness::context_create() {
  ContextSlot* slot = pick_context();
  const uint8_t variant = in_.u8();
  Expectation e;
  sr_context_options o;
  sr_context_options_default(&o, sizeof o);
  o.backend = SR_BACKEND_CPU;
  o.num_threads = 1 + (variant & 1);
  bool defaults = false;  // NULL options: AUTO backend, every core
  switch ((variant >> 1) % 8) {
    case 4:
      o.device_index = variant & 0x10 ? 1 : -1;
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
      break;
    case 5: defaults = true; break;
    case 6:
      store_raw(o.backend, variant & 0x10 ? 9 : -1);
      e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_UNSUPPORTED, SR_ERR_BACKEND_UNAVAILABLE});
      break;
    case 7:
      o.num_threads = variant & 0x10 ? -1 : std::numeric_limits<int32_t>::max();
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
      break;
    default: break;
  }
  Expectation unused;  // NULL options carry no struct_size
  o.struct_size = pick_struct_size(sizeof o, defaults ? unused : e);
  const bool null_out = (variant & 0xE0) == 0xE0;
  if (null_out) e.must_fail({SR_ERR_INVALID_ARGUMENT});

  sr_context* context = kUntouchedContext;
  sr_status st = sr_context_create(defaults ? nullptr : &o, null_out ? nullptr : &context);
  if (!e.check(st, "sr_context_create")) {
    FUZZ_CHECK(context == kUntouchedContext, "a failed sr_context_create wrote its out-parameter");
    return;
  }
  sr_backend backend = SR_BACKEND_AUTO;
  int32_t threads = -1;
  const char* name = nullptr;
  FUZZ_CHECK(sr_context_backend(context, &backend) == SR_OK && backend != SR_BACKEND_AUTO, "context backend");
  FUZZ_CHECK(sr_context_device_name(context, &name) == SR_OK && name && name[0], "context device name");
  FUZZ_CHECK(sr_context_num_threads(context, &threads) == SR_OK, "sr_context_num_threads: %s", sr_last_error());
  if (defaults) {  // AUTO may find a GPU; the harness only drives host-memory contexts
    FUZZ_CHECK(backend != SR_BACKEND_CPU || threads >= 1, "CPU context with %d threads", threads);
    sr_context_destroy(context);
    return;
  }
  FUZZ_CHECK(backend == SR_BACKEND_CPU && threads == o.num_threads, "asked for a CPU context with %d threads, got "
             "backend %d with %d", o.num_threads, backend, threads);
  if (slot->handle) {
    sr_context_destroy(context);
    return;
  }
  *slot = ContextSlot{};
  slot->handle = context;
  slot->threads = threads;
}

void Harness::context_destroy() {
  const int index = in_.u8() % kContextSlots;
  ContextSlot& slot = contexts_[index];
  // The header: every cache created on a context must be destroyed first.
  for (const CacheSlot& cache : caches_) {
    if (cache.handle && cache.context_slot == index) return;
  }
  sr_context_destroy(slot.handle);  // NULL is allowed
  slot = ContextSlot{};
}

void Harness::cache_create() {
  CacheSlot* slot = pick_cache();
  const int context_index = in_.u8() % kContextSlots;
  ContextSlot& context = contexts_[context_index];
  Expectation e;
  sr_kv_cache_options o;
  sr_kv_cache_options_default(&o, sizeof o);
  uint8_t b = in_.u8();
  o.num_layers = b < 0xF0 ? b % 3 + 1 : (b & 1 ? 0 : -1);
  if (o.num_layers < 1) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  o.num_kv_heads = b < 0xF0 ? b % 2 + 1 : (b & 1 ? 0 : -1);
  if (o.num_kv_heads < 1) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  const int32_t head_dims[8] = {64, 64, 64, 64, 64, 128, 256, 96};
  o.head_dim = (b & 7) == 7 && (b & 0x80) ? 0 : head_dims[b & 7];
  if (o.head_dim != 64 && o.head_dim != 128 && o.head_dim != 256) {
    e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  }
  b = in_.u8();
  const int32_t pages[16] = {16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 64, 128, 24, 0};
  o.page_tokens = pages[b % 16];
  if (o.page_tokens == 24 || o.page_tokens == 0) {
    e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  }
  b = in_.u8();
  if (b < 0xF0) {
    o.capacity_tokens = (b % 12 + 1) * 8 + (b & 0x80 ? 1 : 0);
  } else {
    // None of these fits in memory: 0, negatives, and sizes whose page count overflows.
    const int64_t absurd[8] = {0, -1, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
                               int64_t{1} << 62, std::numeric_limits<int64_t>::max() - 15, int64_t{1} << 40, -4096};
    o.capacity_tokens = absurd[b % 8];
    e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_MEMORY});
  }
  b = in_.u8();
  const int32_t dtypes[8] = {SR_DTYPE_F32, SR_DTYPE_FP8_E4M3, SR_DTYPE_F16, SR_DTYPE_F16,
                             SR_DTYPE_BF16, SR_DTYPE_BF16, SR_DTYPE_CACHE, 7};
  store_raw(o.dtype, dtypes[b % 8]);
  if (b % 8 >= 6) e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  o.max_batch = b < 0xF0 ? b % 4 + 1 : (b & 1 ? 0 : -1);
  if (o.max_batch < 1) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  if (b % 8 < 4) {
    o.max_q_heads = 0;  // default: 8 * num_kv_heads
  } else if (b % 8 < 7) {
    o.max_q_heads = std::max(o.num_kv_heads, 1) * (b % 8 - 3);
  } else {
    o.max_q_heads = b & 0x80 ? -8 : 3;
    if (o.max_q_heads < 0) {
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
    } else if (o.num_kv_heads != 1 && o.num_kv_heads != 3) {
      e.unsure();  // not a multiple of num_kv_heads: the header does not say
    }
  }
  o.struct_size = pick_struct_size(sizeof o, e);
  b = in_.u8();
  const bool null_options = b % 32 == 1, null_out = b % 32 == 2;
  if (null_options || null_out || !context.handle) e.must_fail({SR_ERR_INVALID_ARGUMENT});

  sr_kv_cache* cache = kUntouchedCache;
  sr_status st = sr_kv_cache_create(context.handle, null_options ? nullptr : &o, null_out ? nullptr : &cache);
  if (!e.check(st, "sr_kv_cache_create")) {
    FUZZ_CHECK(cache == kUntouchedCache, "a failed sr_kv_cache_create wrote its out-parameter");
    return;
  }
  sr_kv_cache_options resolved = o;
  if (resolved.max_q_heads == 0) resolved.max_q_heads = 8 * resolved.num_kv_heads;
  CacheSlot fresh;
  fresh.handle = cache;
  fresh.context_slot = context_index;
  fresh.model = std::make_unique<ShadowCache>(resolved);
  check_cache(fresh, /*contents=*/false);
  if (slot->handle) {
    sr_kv_cache_destroy(cache);
    return;
  }
  *slot = std::move(fresh);
}

void Harness::cache_destroy() {
  CacheSlot* slot = pick_cache();
  sr_kv_cache_destroy(slot->handle);  // NULL is allowed
  *slot = CacheSlot{};
}

void Harness::seq_add() {
  CacheSlot* slot = pick_cache();
  const bool null_out = in_.u8() % 16 == 1;
  Expectation e;
  if (!slot->handle || null_out) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  sr_seq_id id = kUntouchedSeq;
  sr_status st = sr_seq_add(slot->handle, null_out ? nullptr : &id);
  if (!e.check(st, "sr_seq_add")) {
    FUZZ_CHECK(id == kUntouchedSeq, "a failed sr_seq_add wrote its out-parameter");
    return;
  }
  FUZZ_CHECK(!slot->model->was_issued(id), "sr_seq_add returned id %lld, which this cache issued before",
             static_cast<long long>(id));
  slot->model->add(id);
}

void Harness::seq_fork() {
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    sr_seq_id child = kUntouchedSeq;
    e.check(sr_seq_fork(nullptr, 1, &child), "sr_seq_fork(NULL cache)");
    FUZZ_CHECK(child == kUntouchedSeq, "a failed sr_seq_fork wrote its out-parameter");
    return;
  }
  Expectation e;
  const sr_seq_id parent = pick_sequence(*slot, e);
  const bool null_out = in_.u8() % 16 == 1;
  if (null_out) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  sr_seq_id child = kUntouchedSeq;
  slot->contents_dirty = true;
  sr_status st = sr_seq_fork(slot->handle, parent, null_out ? nullptr : &child);
  if (!e.check(st, "sr_seq_fork")) {
    FUZZ_CHECK(child == kUntouchedSeq, "a failed sr_seq_fork wrote its out-parameter");
    return;
  }
  FUZZ_CHECK(!slot->model->was_issued(child), "sr_seq_fork returned id %lld, which this cache issued before",
             static_cast<long long>(child));
  slot->model->fork(parent, child);
}

void Harness::seq_remove() {
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    e.check(sr_seq_remove(nullptr, 1), "sr_seq_remove(NULL cache)");
    return;
  }
  Expectation e;
  const sr_seq_id id = pick_sequence(*slot, e);
  slot->contents_dirty = true;
  if (e.check(sr_seq_remove(slot->handle, id), "sr_seq_remove")) slot->model->remove(id);
}

void Harness::seq_truncate() {
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    e.check(sr_seq_truncate(nullptr, 1, 0), "sr_seq_truncate(NULL cache)");
    return;
  }
  Expectation e;
  const sr_seq_id id = pick_sequence(*slot, e);
  const ShadowSequence* s = slot->model->find(id);
  const int64_t longest = s ? slot->model->longest(*s) : 0;
  const uint8_t b = in_.u8();
  // Mostly in [0, longest]; sometimes just past it, or an edge value.
  const int64_t new_length = b < 0xF0 ? b % (longest + 3) : edge_int64(b);
  if (s && (new_length < 0 || new_length > longest)) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  slot->contents_dirty = true;
  if (e.check(sr_seq_truncate(slot->handle, id, new_length), "sr_seq_truncate")) slot->model->truncate(id, new_length);
}

}  // namespace sr_fuzz
