// One decode step of a sequence whose cache is spread over several ranks (README.md here): each
// rank attends over its own tokens with lse out, the ranks' packed states travel in one
// collective, and sr_merge_attention_states turns them into attention over the whole sequence
// with the merged certified bound. Only the public C API is used, so this runs on any backend;
// the memory is the caller's (the context's: host for the CPU backend, device for GPU ones).
#pragma once

#include <cstdint>

#include "sinkrouter/sinkrouter.h"

namespace sr::cp {

// One rank's partial attention for `rows` (batch entry, q-head) pairs, packed so one collective
// moves it: out [rows][head_dim] f32, then lse [rows], then the certified bound [rows].
struct StateLayout {
  int64_t rows;
  int32_t head_dim;
  int64_t floats() const { return rows * (head_dim + 2); }
  int64_t lse_offset() const { return rows * head_dim; }
  int64_t bound_offset() const { return rows * (head_dim + 1); }
};

// The rank's step into `state` (layout.floats() floats): `args` as the caller sets it (q, seqs,
// lengths, routing, ...; its batch and num_q_heads give layout.rows) with out, out_dtype, lse
// and head_error_bound replaced by the state's. A learned sink (args.sink_logits) belongs to one
// rank only: pass it on rank 0 alone.
sr_status decode_rank(sr_context* context, const sr_kv_cache* cache, const sr_decode_args& args,
                      const StateLayout& layout, float* state);

// Merges the `ranks` states packed one after another at `gathered` (what an all-gather leaves on
// every rank) into out ([rows][head_dim] in out_dtype) and, where not null, lse and bound, on
// `stream` (GPU contexts; null: the context's). Returns sr_merge_attention_states' status.
sr_status merge_ranks(sr_context* context, const StateLayout& layout, const float* gathered, int32_t ranks, void* out,
                      sr_dtype out_dtype, float* lse, float* bound, void* stream);

}  // namespace sr::cp
