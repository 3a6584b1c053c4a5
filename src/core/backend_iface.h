// The internal interface between the core and a backend (CPU built in; CUDA and HIP loaded at
// run time). Plain C types only: it crosses a dlopen boundary. A backend library exports one
// function, sr_backend_plugin_init, that hands back a table for SR_BACKEND_IFACE_VERSION.
// Bookkeeping (sequences, page tables, page refcounts) stays in the core; a backend owns the
// page storage, the per-page summaries and the decode kernels.
#ifndef SINKROUTER_BACKEND_IFACE_H
#define SINKROUTER_BACKEND_IFACE_H

#include <stddef.h>
#include <stdint.h>

#include "sinkrouter/sinkrouter.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SR_BACKEND_IFACE_VERSION 5u

typedef struct sr_backend_device sr_backend_device;    // one opened device
typedef struct sr_backend_storage sr_backend_storage;  // one cache's page pool

// Shape of a cache's page pool. Storage per layer: K and V each
// [num_pages][num_kv_heads][page_tokens][head_dim], plus per-page summaries.
typedef struct sr_cache_geometry {
  int32_t num_layers;
  int32_t num_kv_heads;
  int32_t head_dim;
  int32_t page_tokens;
  int64_t num_pages;
  sr_dtype dtype;
  int32_t max_batch;
  int32_t max_q_heads;
} sr_cache_geometry;

// One batch entry of a decode step, resolved by the core.
typedef struct sr_decode_seq {
  const int32_t* pages;  // physical page of each logical page (host memory)
  int64_t length;        // tokens at the step's layer (>= 1)
  int64_t slot;          // stable small index of the sequence in its cache
} sr_decode_seq;

// How a step routes, decided once by the core (docs/ARCHITECTURE.md, "The routing policy");
// backends follow it and decide nothing about routing themselves.
typedef struct sr_step_routing {
  sr_routing_mode mode;   // effective mode: SR_ROUTING_OFF when routing is off, when the step runs
                          // dense (run_dense) and for tau = +inf without a budget to enforce
  float tau;              // SR_ROUTING_TAU: the logit gap
  float error_budget;     // relative error budget (> 0 where enforced)
  int32_t enforce_budget; // a head whose certified bound exceeds error_budget is recomputed
                          // exactly (budget mode, or tau mode with a budget)
  int32_t sink_tokens;    // the anchor set: the first sink_tokens and the last window_tokens
  int32_t window_tokens;
  int32_t run_dense;      // routing was asked for, but the step is shorter than route_from_tokens:
                          // it runs dense and counts in sr_decode_stats.steps_run_dense
} sr_step_routing;

// A decode step with every argument checked and every default applied by the core: the
// backend's whole view of it (the public sr_decode_args does not cross the plugin boundary).
typedef struct sr_step_desc {
  int32_t layer;
  int32_t batch;
  int32_t num_q_heads;
  int32_t group;                // q-heads per kv-head
  const sr_decode_seq* seqs;    // [batch]
  const void* q;                // [batch][num_q_heads][head_dim], the context's memory
  sr_dtype q_dtype;
  void* out;                    // [batch][num_q_heads][head_dim]
  sr_dtype out_dtype;
  float scale;                  // the softmax scale (resolved: never 0)
  sr_step_routing routing;
  float* head_skipped_mass;     // optional [batch][num_q_heads]
  float* head_error_bound;      // optional [batch][num_q_heads]
  int32_t collect_stats;
  void* stream;                 // GPU: NULL = the context's stream
  // Attention variants (sr_decode_args; shared arithmetic in softmax_state.h).
  const float* sink_logits;     // optional [num_q_heads], the context's memory
  float* lse;                   // optional [batch][num_q_heads]
  int32_t window_left;          // -1 = every token (visible_tokens)
  int32_t window_sink_tokens;
  float logit_soft_cap;         // 0 = none
} sr_step_desc;

// sr_merge_attention_states, checked by the core (the public sr_merge_args does not cross).
typedef struct sr_merge_desc {
  int32_t num_states;
  int64_t rows;
  int32_t head_dim;
  const void* const* state_outs;    // host array of pointers into the context's memory
  sr_dtype state_dtype;
  const float* const* state_lses;
  const float* const* state_bounds; // NULL, or entries that may be NULL
  void* out;
  sr_dtype out_dtype;
  float* lse;                       // optional
  float* bound;                     // optional
  void* stream;
} sr_merge_desc;

// Backends write a message here on failure; the core forwards it to sr_last_error().
typedef struct sr_backend_error {
  char message[512];
} sr_backend_error;

typedef struct sr_backend_i {
  uint32_t iface_version;  // SR_BACKEND_IFACE_VERSION
  const char* name;        // "cpu", "cuda", "hip"
  // A routed step whose longest sequence is shorter runs dense, unless the caller sets
  // sr_decode_args.route_from_tokens: where this backend's routing costs more than it saves.
  int64_t route_from_tokens;

  // Devices this backend can open (0: library loads but finds no device).
  int32_t (*device_count)(void);
  sr_status (*device_open)(int32_t device_index, int32_t num_threads, void* stream,
                           sr_backend_device** out_device, sr_backend_error* err);
  void (*device_close)(sr_backend_device* device);
  const char* (*device_name)(const sr_backend_device* device);
  int32_t (*device_threads)(const sr_backend_device* device);

  sr_status (*storage_create)(sr_backend_device* device, const sr_cache_geometry* geometry,
                              sr_backend_storage** out_storage, sr_backend_error* err);
  void (*storage_destroy)(sr_backend_storage* storage);

  // Write tokens [first_token, first_token + n_tokens) of one layer, updating the summaries.
  // pages is the sequence's whole page table (pages[i] holds logical page i): a node's
  // spectral summary covers pages written before.
  sr_status (*write_tokens)(sr_backend_storage* storage, int32_t layer, const int32_t* pages,
                            int64_t first_token, int64_t n_tokens, const void* k, const void* v,
                            const sr_kv_io* io, sr_backend_error* err);
  sr_status (*read_tokens)(const sr_backend_storage* storage, int32_t layer, const int32_t* pages,
                           int64_t first_token, int64_t n_tokens, void* k_out, void* v_out,
                           const sr_kv_io* io, sr_backend_error* err);
  // Copy a whole page (every layer, summaries too): copy-on-write of a shared page.
  sr_status (*copy_page)(sr_backend_storage* storage, int32_t src_page, int32_t dst_page,
                         sr_backend_error* err);
  // The page keeps only its first valid_tokens tokens (after a truncate): recompute summaries.
  sr_status (*trim_page)(sr_backend_storage* storage, int32_t layer, int32_t page,
                         int32_t valid_tokens, sr_backend_error* err);

  // Optional (NULL for the CPU): the core reports every change of a sequence, so a GPU backend
  // can keep device-resident page tables and lengths that a replayed graph reads. Called
  // with the cache's lock held, after the change; n_pages = 0 and lengths = NULL on removal.
  sr_status (*sequence_update)(sr_backend_storage* storage, int64_t slot, const int32_t* pages,
                               int64_t n_pages, const int64_t* lengths, sr_backend_error* err);

  sr_status (*decode)(sr_backend_device* device, sr_backend_storage* storage,
                      const sr_step_desc* step, sr_backend_error* err);
  sr_status (*merge_states)(sr_backend_device* device, const sr_merge_desc* merge, sr_backend_error* err);
  sr_status (*stats_read)(sr_backend_device* device, sr_decode_stats* out, sr_backend_error* err);
  sr_status (*stats_reset)(sr_backend_device* device, sr_backend_error* err);
} sr_backend_i;

#ifdef __cplusplus
}  // extern "C"

// Fills `table`'s entries from the functions of the same names in scope: a backend implements
// each entry as a function named like it (sequence_update included, or set it to nullptr after).
#define SR_BACKEND_TABLE_ENTRIES(table)      \
  (table).device_count = device_count;       \
  (table).device_open = device_open;         \
  (table).device_close = device_close;       \
  (table).device_name = device_name;         \
  (table).device_threads = device_threads;   \
  (table).storage_create = storage_create;   \
  (table).storage_destroy = storage_destroy; \
  (table).write_tokens = write_tokens;       \
  (table).read_tokens = read_tokens;         \
  (table).copy_page = copy_page;             \
  (table).trim_page = trim_page;             \
  (table).decode = decode;                   \
  (table).merge_states = merge_states;       \
  (table).stats_read = stats_read;           \
  (table).stats_reset = stats_reset

// The first required entry a table lacks ("decode", ...), or nullptr when it is complete. Only
// sequence_update is optional. The loader refuses an incomplete table (backend_loader.cpp).
inline const char* missing_backend_entry(const sr_backend_i* t) {
#define SR_REQUIRE_ENTRY(field) \
  if (!t->field) return #field;
  SR_REQUIRE_ENTRY(name)
  SR_REQUIRE_ENTRY(device_count)
  SR_REQUIRE_ENTRY(device_open)
  SR_REQUIRE_ENTRY(device_close)
  SR_REQUIRE_ENTRY(device_name)
  SR_REQUIRE_ENTRY(device_threads)
  SR_REQUIRE_ENTRY(storage_create)
  SR_REQUIRE_ENTRY(storage_destroy)
  SR_REQUIRE_ENTRY(write_tokens)
  SR_REQUIRE_ENTRY(read_tokens)
  SR_REQUIRE_ENTRY(copy_page)
  SR_REQUIRE_ENTRY(trim_page)
  SR_REQUIRE_ENTRY(decode)
  SR_REQUIRE_ENTRY(merge_states)
  SR_REQUIRE_ENTRY(stats_read)
  SR_REQUIRE_ENTRY(stats_reset)
#undef SR_REQUIRE_ENTRY
  return nullptr;
}

extern "C" {
#endif

// The one symbol a backend library exports.
typedef sr_status (*sr_backend_plugin_init_fn)(uint32_t iface_version, const sr_backend_i** out);
#define SR_BACKEND_PLUGIN_INIT_SYMBOL "sr_backend_plugin_init"

#ifdef __cplusplus
}
#endif

#endif
