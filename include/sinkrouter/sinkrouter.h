/*
 * SinkRouter: long-context decode attention with sink-aware routing.
 *
 * The one public header of libsinkrouter. Plain C99; every symbol starts with sr_/SR_.
 *
 * Conventions (hold for every function below):
 *  - Every function that can fail returns an sr_status. On failure nothing observable changes:
 *    out-parameters keep their values, caches and contexts keep their state, and
 *    sr_last_error() (per thread) says in words what was wrong, naming the argument and value.
 *  - Destroy functions accept NULL and return nothing.
 *  - Every options/arguments struct starts with `size_t struct_size`. Fill it with the matching
 *    *_default(ptr, sizeof *ptr) function; fields are only ever appended, so a program built
 *    against an older header keeps working with a newer library (the fields it lacks take their
 *    defaults); a struct_size this library does not know, such as a newer header's, is refused
 *    with SR_ERR_STRUCT_SIZE.
 *  - Nothing aborts, prints, or lets a C++ exception cross this boundary.
 *
 * Thread safety:
 *  - sr_context and sr_kv_cache handles may be used from several threads at once. Calls that
 *    change a cache (append, sequence add/fork/truncate/remove) are serialised internally;
 *    sr_decode_step and sr_kv_read only read a cache and run concurrently with each other.
 *  - A decode step that runs while another thread appends to the *same sequence* sees either
 *    the old or the new length (whole tokens), never a torn token.
 *  - sr_last_error() is per thread.
 */
#ifndef SINKROUTER_H
#define SINKROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "sinkrouter/version.h"

#if defined(_WIN32)
#  if defined(SR_BUILDING_LIBRARY)
#    define SR_API __declspec(dllexport)
#  elif defined(SR_STATIC)
#    define SR_API
#  else
#    define SR_API __declspec(dllimport)
#  endif
#else
#  define SR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status and errors */

/* Values are pinned: new codes are only appended. */
typedef enum sr_status {
  SR_OK = 0,
  SR_ERR_INVALID_ARGUMENT = 1,    /* null pointer, zero size, inconsistent arguments */
  SR_ERR_OUT_OF_RANGE = 2,        /* layer, head, token range or value outside what is allowed */
  SR_ERR_UNSUPPORTED = 3,         /* valid request this build/backend cannot do (dtype, head_dim) */
  SR_ERR_OUT_OF_MEMORY = 4,       /* host or device allocation failed */
  SR_ERR_CACHE_FULL = 5,          /* no free page left in the cache's pool */
  SR_ERR_UNKNOWN_SEQUENCE = 6,    /* sequence id not in this cache (never added, or removed) */
  SR_ERR_BACKEND_UNAVAILABLE = 7, /* requested backend library or device not found */
  SR_ERR_DEVICE = 8,              /* the GPU runtime reported an error */
  SR_ERR_STRUCT_SIZE = 9,         /* struct_size of an options struct is not one we know */
  SR_ERR_INTERNAL = 10            /* a bug in SinkRouter: please report the message */
} sr_status;

/* Static name of a status ("SR_ERR_CACHE_FULL"); never NULL. */
SR_API const char* sr_status_string(sr_status status);

/* Message of the last failed call on this thread ("" if none). Valid until the next call
 * on this thread. */
SR_API const char* sr_last_error(void);

/* ---------------------------------------------------------------- versions */

/* SR_VERSION_NUMBER of the loaded library (major*10000 + minor*100 + patch). */
SR_API unsigned sr_version_number(void);
/* "major.minor.patch" of the loaded library. */
SR_API const char* sr_version(void);
/* SR_ABI_VERSION of the loaded library: compare with the header's to detect a mismatch. */
SR_API unsigned sr_abi_version(void);

/* ---------------------------------------------------------------- basic types */

typedef enum sr_backend {
  SR_BACKEND_AUTO = 0, /* first GPU backend that loads and finds a device, else CPU */
  SR_BACKEND_CPU = 1,
  SR_BACKEND_CUDA = 2,
  SR_BACKEND_HIP = 3
} sr_backend;

typedef enum sr_dtype {
  SR_DTYPE_CACHE = -1, /* sr_kv_io only: the cache's own dtype */
  SR_DTYPE_F32 = 0,
  SR_DTYPE_F16 = 1,
  SR_DTYPE_BF16 = 2,
  /* OCP FP8 E4M3 (max 448, no infinities), for sr_kv_cache_options.dtype only: a cache element
   * type, never a buffer type. The library stores one f32 scale per token and kv-head for K and
   * one for V (the row's largest magnitude / 448), computed on append; elements round to nearest
   * even. A row holding NaN or Inf reads back as NaN; a row whose largest magnitude is below
   * 2^-100 reads back as zeros. Appends and reads convert from and to f32, f16 or bf16 buffers
   * (sr_kv_io.dtype must name one). Since 0.2.0. */
  SR_DTYPE_FP8_E4M3 = 3
} sr_dtype;

/* Where a caller's buffer lives. */
typedef enum sr_memory {
  SR_MEMORY_HOST = 0,
  SR_MEMORY_DEVICE = 1 /* memory of the context's GPU (GPU backends only) */
} sr_memory;

typedef int64_t sr_seq_id;

typedef struct sr_context sr_context;
typedef struct sr_kv_cache sr_kv_cache;

/* Name of a backend ("cpu", "cuda", "hip", "auto"); never NULL. */
SR_API const char* sr_backend_name(sr_backend backend);
/* Bytes of one element of a dtype, 0 for an unknown value (SR_DTYPE_FP8_E4M3: 1; its scales
 * add 8 bytes per token and kv-head). */
SR_API size_t sr_dtype_size(sr_dtype dtype);

/* ---------------------------------------------------------------- context */

typedef struct sr_context_options {
  size_t struct_size;
  sr_backend backend;   /* default SR_BACKEND_AUTO */
  int32_t device_index; /* GPU ordinal; default 0; must be 0 for the CPU */
  int32_t num_threads;  /* CPU worker threads; 0 (default) = all online cores */
  void* stream;         /* GPU stream (cudaStream_t / hipStream_t) used when a call passes none;
                           NULL (default) = the device's default stream */
} sr_context_options;

SR_API sr_status sr_context_options_default(sr_context_options* options, size_t struct_size);

/* options may be NULL for all defaults. */
SR_API sr_status sr_context_create(const sr_context_options* options, sr_context** out_context);
/* Destroy a context. Every cache created on it must be destroyed first. */
SR_API void sr_context_destroy(sr_context* context);

/* The backend a context runs on (resolved: never AUTO). */
SR_API sr_status sr_context_backend(const sr_context* context, sr_backend* out_backend);
/* Worker threads of a CPU context; 0 for GPU contexts. */
SR_API sr_status sr_context_num_threads(const sr_context* context, int32_t* out_threads);
/* Human-readable description of the context's device ("cpu: 16 threads, avx512"); the string
 * lives as long as the context. */
SR_API sr_status sr_context_device_name(const sr_context* context, const char** out_name);

/* ---------------------------------------------------------------- KV cache */

typedef struct sr_kv_cache_options {
  size_t struct_size;
  int32_t num_layers;      /* >= 1 (no default: must be set) */
  int32_t num_kv_heads;    /* >= 1 (no default) */
  int32_t head_dim;        /* 64, 128 or 256 (default 128) */
  int32_t page_tokens;     /* tokens per page: 16, 32, 64 or 128 (default 16) */
  int64_t capacity_tokens; /* pool size: pages = ceil(capacity_tokens / page_tokens) (no default) */
  sr_dtype dtype;          /* element type of K and V (default SR_DTYPE_BF16; SR_DTYPE_FP8_E4M3
                              halves the bytes, see sr_dtype) */
  int32_t max_batch;       /* largest batch of one decode step; sizes GPU workspace (default 256) */
  int32_t max_q_heads;     /* largest num_q_heads of a decode step; 0 (default) = 8 * num_kv_heads */
} sr_kv_cache_options;

SR_API sr_status sr_kv_cache_options_default(sr_kv_cache_options* options, size_t struct_size);

/* The cache lives in the context's memory (host for the CPU, device for GPUs). */
SR_API sr_status sr_kv_cache_create(sr_context* context, const sr_kv_cache_options* options,
                                    sr_kv_cache** out_cache);
SR_API void sr_kv_cache_destroy(sr_kv_cache* cache);

/* Pages in the pool, and pages not held by any sequence. */
SR_API sr_status sr_kv_cache_pages(const sr_kv_cache* cache, int64_t* out_total_pages,
                                   int64_t* out_free_pages);

/* ---------------------------------------------------------------- sequences */

/* Add an empty sequence. Ids are never reused within a cache. */
SR_API sr_status sr_seq_add(sr_kv_cache* cache, sr_seq_id* out_seq);

/* New sequence with the parent's tokens. Pages are shared, not copied; the first write into a
 * shared page copies that page (copy-on-write), so parent and child never see each other's
 * later appends. */
SR_API sr_status sr_seq_fork(sr_kv_cache* cache, sr_seq_id parent, sr_seq_id* out_child);

/* Remove a sequence; pages no other sequence holds return to the pool. */
SR_API sr_status sr_seq_remove(sr_kv_cache* cache, sr_seq_id seq);

/* Tokens held for one layer (layers fill independently during a step: append layer l, decode
 * layer l, then l + 1). */
SR_API sr_status sr_seq_length(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer,
                               int64_t* out_length);

/* Keep only the first new_length tokens in every layer (speculative decoding rolls back with
 * new_length = length - n). new_length may not exceed the longest layer. Freed pages return
 * to the pool. */
SR_API sr_status sr_seq_truncate(sr_kv_cache* cache, sr_seq_id seq, int64_t new_length);

/* ---------------------------------------------------------------- K/V transfer */

/* Layout of the caller's K/V buffers. Element (t, h, d) of n tokens sits at
 * base[t * token_stride + h * head_stride + d]; strides count elements, not bytes. */
typedef struct sr_kv_io {
  size_t struct_size;
  sr_dtype dtype;       /* element type of the caller's buffers; default SR_DTYPE_CACHE.
                           Appending converts to the cache's dtype (f32 -> bf16 rounds to
                           nearest even). An FP8 cache takes f32, f16 or bf16 buffers only,
                           named here: SR_DTYPE_CACHE and SR_DTYPE_FP8_E4M3 are refused. */
  int64_t token_stride; /* 0 (default) = num_kv_heads * head_dim */
  int64_t head_stride;  /* 0 (default) = head_dim */
  sr_memory memory;     /* default SR_MEMORY_HOST. SR_MEMORY_DEVICE: GPU caches only; the copy
                           is then asynchronous on `stream` */
  void* stream;         /* NULL = the context's stream */
} sr_kv_io;

SR_API sr_status sr_kv_io_default(sr_kv_io* io, size_t struct_size);

/* Append n_tokens (>= 1) tokens of K and V to one layer of one sequence. io may be NULL
 * (contiguous [n_tokens][num_kv_heads][head_dim] in the cache's dtype, host memory; an FP8
 * cache needs an io naming its buffers' dtype). SR_ERR_CACHE_FULL if the pool lacks pages: then nothing is appended. */
SR_API sr_status sr_kv_append(sr_kv_cache* cache, sr_seq_id seq, int32_t layer, int64_t n_tokens,
                              const void* k, const void* v, const sr_kv_io* io);

/* Copy tokens [first_token, first_token + n_tokens) of one layer back out (either of k_out or
 * v_out may be NULL). Synchronous. */
SR_API sr_status sr_kv_read(const sr_kv_cache* cache, sr_seq_id seq, int32_t layer,
                            int64_t first_token, int64_t n_tokens, void* k_out, void* v_out,
                            const sr_kv_io* io);

/* ---------------------------------------------------------------- decode */

typedef enum sr_routing_mode {
  /* Dense exact attention: every K and V block is read. */
  SR_ROUTING_OFF = 0,
  /* Skip the V block of a page whose logits all sit more than `tau` below the reference
   * (the largest logit of the anchor set: the first sink_tokens and the last window_tokens,
   * or any larger logit seen so far). If error_budget > 0, a head whose certified bound
   * exceeds it is recomputed exactly. */
  SR_ROUTING_TAU = 1,
  /* Skip V blocks with the smallest maxima first while the certified relative error stays
   * within error_budget; a head whose final bound would exceed it is recomputed exactly.
   * The budget is never exceeded. The mode users should run. */
  SR_ROUTING_BUDGET = 2
} sr_routing_mode;

typedef struct sr_decode_args {
  size_t struct_size;
  int32_t layer;
  int32_t batch;             /* >= 1 and <= the cache's max_batch */
  const sr_seq_id* seq_ids;  /* [batch], host memory; each sequence's length >= 1 at `layer` */
  int32_t num_q_heads;       /* a multiple of num_kv_heads; q-head h reads kv-head
                                h / (num_q_heads / num_kv_heads) */
  const void* q;             /* [batch][num_q_heads][head_dim] */
  sr_dtype q_dtype;          /* default SR_DTYPE_F32 */
  void* out;                 /* [batch][num_q_heads][head_dim] */
  sr_dtype out_dtype;        /* default SR_DTYPE_F32 */
  float scale;               /* softmax scale; 0 (default) = 1 / sqrt(head_dim) */
  sr_routing_mode routing;   /* default SR_ROUTING_OFF */
  float tau;                 /* logit gap for SR_ROUTING_TAU (> 0; +inf = nothing skipped);
                                default 12 */
  int32_t sink_tokens;       /* anchor: first tokens (default 4) */
  int32_t window_tokens;     /* anchor: last tokens (default 64) */
  float error_budget;        /* relative output error ||o - o'|| / ||o||: required (> 0) for
                                SR_ROUTING_BUDGET, optional cap (0 = none) for SR_ROUTING_TAU;
                                default 1e-3 */
  float* head_skipped_mass;  /* optional [batch][num_q_heads]: softmax mass whose V was skipped */
  float* head_error_bound;   /* optional [batch][num_q_heads]: certified relative error bound */
  int32_t collect_stats;     /* nonzero: add this step to the context's statistics */
  void* stream;              /* GPU: NULL = the context's stream */
  int64_t route_from_tokens; /* routing applies from this length on: a routed step whose longest
                                sequence is shorter runs dense (exact: nothing skipped, bound 0,
                                counted in sr_decode_stats.steps_run_dense), because there
                                routing's fixed costs outweigh what skipping saves. -1
                                (default) = the backend's own threshold: CPU 0, CUDA and HIP
                                65536 (H100: below it every routed mode was slower than dense,
                                bench/RESULTS.md); 0 = route every step */
  /* Attention variants (since 0.3.0; docs/ARCHITECTURE.md, "Attention variants"). Logits are
   * s = scale * q.k, soft-capped where logit_soft_cap is set. */
  const float* sink_logits;  /* optional [num_q_heads], the context's memory: a learned sink
                                logit per q-head (gpt-oss). exp(sink) joins the head's softmax
                                denominator with no value, so the output shrinks by
                                Z / (Z + exp(sink)); routing takes it as an anchor logit. NULL
                                (default) = none; -inf = none for that head */
  float* lse;                /* optional [batch][num_q_heads], the context's memory: the natural
                                log of each head's whole softmax denominator, log(sum_t exp(s_t)
                                + exp(sink)), exact even where routing skipped V (skipped
                                logits are scored); what sr_merge_attention_states takes */
  int32_t window_left;       /* sliding window: each sequence attends to its last
                                window_left + 1 tokens only, and no other token is read; -1
                                (default) = every token */
  int32_t window_sink_tokens; /* with a window: its first window_sink_tokens tokens are attended
                                too, as StreamingLLM keeps them (default 0) */
  float logit_soft_cap;      /* > 0: each logit s becomes cap * tanh(s / cap) (Gemma 2) before the
                                softmax, the routing and the bound; 0 (default) = none */
} sr_decode_args;
/* Buffers q, out, head_skipped_mass and head_error_bound live in the context's memory: host
 * for the CPU backend, device for GPU backends. On a GPU backend sr_decode_step is
 * asynchronous on the stream, allocates nothing and never synchronises (it may be captured in
 * a CUDA/HIP graph); steps on one cache share its device workspace, so their streams must be
 * ordered (one stream, or events between them). A long tau-mode GPU step of one sequence
 * divides its work among the kv-heads by what each read in that sequence's previous routed
 * step, so repeating a step may change its final bits (always within its bound); the same
 * calls give the same bits in every run. The error bound covers what routing skipped, not f32
 * rounding. Whether a step routes (route_from_tokens) is decided when it is called, from the
 * lengths then: a replayed graph keeps the choice made at capture. */

SR_API sr_status sr_decode_args_default(sr_decode_args* args, size_t struct_size);

/* One decode step of attention for a batch of sequences in one layer. */
SR_API sr_status sr_decode_step(sr_context* context, const sr_kv_cache* cache,
                                const sr_decode_args* args);

/* Attention over disjoint sets of keys, merged into attention over their union: say a shared
 * prefix cache and a per-request suffix, or shards of one sequence. Each state is an output
 * with its lse (sr_decode_args.lse), for `rows` (batch entry, q-head) pairs of head_dim values.
 * The merged output is sum_i exp(lse_i - lse) out_i with lse = log sum_i exp(lse_i), and the
 * merged certified bound combines the states' bounds (docs/ARCHITECTURE.md, "Merging attention
 * states"). A learned sink belongs in one state only. */
typedef struct sr_merge_args {
  size_t struct_size;
  int32_t num_states;               /* >= 1 and <= 64 */
  int64_t rows;                     /* >= 1 */
  int32_t head_dim;                 /* >= 1 */
  const void* const* state_outs;    /* [num_states] pointers (host memory) to [rows][head_dim] */
  sr_dtype state_dtype;             /* f32, f16 or bf16; default SR_DTYPE_F32 */
  const float* const* state_lses;   /* [num_states] pointers (host memory) to [rows] */
  const float* const* state_bounds; /* optional: NULL, or [num_states] pointers (host memory) to
                                       [rows] relative bounds (head_error_bound); a NULL entry
                                       means an exact state */
  void* out;                        /* [rows][head_dim]; may be one of the state outputs */
  sr_dtype out_dtype;               /* f32, f16 or bf16; default SR_DTYPE_F32 */
  float* lse;                       /* optional [rows] */
  float* bound;                     /* optional [rows]: the merged certified relative bound */
  void* stream;                     /* GPU: NULL = the context's stream */
} sr_merge_args;
/* The buffers behind the pointers live in the context's memory: host for the CPU backend,
 * device for GPU backends, where the call is asynchronous on the stream. */

SR_API sr_status sr_merge_args_default(sr_merge_args* args, size_t struct_size);
SR_API sr_status sr_merge_attention_states(sr_context* context, const sr_merge_args* args);

/* Statistics summed over the steps run with collect_stats since the last reset. */
typedef struct sr_decode_stats {
  size_t struct_size;
  int64_t steps;             /* decode steps counted */
  int64_t heads;             /* (sequence, q-head) pairs computed */
  int64_t blocks_total;      /* (sequence, kv-head, page) blocks scored */
  int64_t blocks_v_skipped;  /* of those, blocks whose V was not read */
  int64_t heads_recomputed;  /* q-heads recomputed exactly because the bound passed the budget */
  double max_skipped_mass;   /* largest skipped softmax mass of any (sequence, q-head) */
  double max_error_bound;    /* largest certified relative error bound of any (sequence, q-head) */
  int64_t steps_run_dense;   /* routed steps run dense: shorter than route_from_tokens */
} sr_decode_stats;

/* Read the statistics (GPU: waits for the context's stream). */
SR_API sr_status sr_context_stats(sr_context* context, sr_decode_stats* out_stats,
                                  size_t struct_size);
SR_API sr_status sr_context_reset_stats(sr_context* context);

#ifdef __cplusplus
}
#endif

#endif /* SINKROUTER_H */
