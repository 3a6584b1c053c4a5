// Plain structs shared by the host side of the GPU backend and its kernels.
#pragma once

#include <stdint.h>

#include "compat.h"
#include "kernel_limits.h"

namespace sr::gpu {

// Where the device-resident page tables and lengths live. The struct itself sits at a fixed
// device address for the cache's lifetime; the arrays it points to may be replaced when they
// grow, so a replayed graph (which bakes in only the struct's address) always reads the
// current tables.
struct DeviceTables {
  int32_t* pages;       // [slot_capacity][page_stride]: physical page of each logical page
  int64_t* lengths;     // [slot_capacity][num_layers]: tokens per layer
  // [slot_capacity][num_layers][kv_heads]: each kv-head's split_weight (src/shared_arithmetic/split_plan.h) in
  // the sequence's last adaptive step, 0 before the first; the next one apportions its blocks
  // by them.
  uint16_t* split_weights;
  int64_t page_stride;  // entries per slot row
  int32_t num_layers;

  // The split weights of sequence slot `slot` at `layer`: one per kv-head.
  __device__ uint16_t* split_weight_row(int64_t slot, int32_t layer, int32_t kv_heads) const {
    return split_weights + (slot * num_layers + layer) * kv_heads;
  }
};

// Statistics summed on the device (sr_decode_stats); floats as their bits so atomicMax works
// (they are never negative).
struct DeviceStats {
  unsigned long long steps;
  unsigned long long heads;
  unsigned long long blocks_total;
  unsigned long long blocks_v_skipped;
  unsigned long long heads_recomputed;
  unsigned int max_skipped_mass_bits;
  unsigned int max_error_bound_bits;
  unsigned long long steps_run_dense;
};

struct DecodeParams {
  // The layer's storage.
  const void* k;          // [num_pages][kv_heads][page_tokens][head_dim]
  const void* v;
  const float* vnorm;     // [num_pages][kv_heads]
  const float* vspectral; // [num_pages][kv_heads][kSpectralSlots] (tree_min_bound.h)
  // Reference compensation (reference_compensation.h): the centred summaries
  // [num_pages][kv_heads][kCentredSlots] and the layer's reference [kv_heads][head_dim]; the
  // reference null where the layer has none yet or the step does not compensate.
  const float* vcentred;
  const float* vreference;
  const float* k_scale;   // FP8 caches: each row's scale, [num_pages][kv_heads][page_tokens]; else null
  const float* v_scale;
  const DeviceTables* tables;
  int32_t layer;
  int32_t kv_heads;
  int32_t page_tokens;
  int32_t page_shift;     // log2(page_tokens)
  int32_t group;          // q-heads per kv-head
  int32_t tiles;          // head tiles per kv-head
  int32_t num_q_heads;
  int32_t splits;         // blocks per (sequence, head tile), unless adaptive_splits
  int32_t adaptive_splits;  // the tau stream of one sequence: the splits x tiles blocks are
                            // apportioned among the tiles by the split weights (DeviceTables)
  int32_t min_split_tokens;
  int32_t prefetch_rows;  // rows ahead of the loads that are requested into the L2 (0: none)
  int32_t stream_dense;   // dense splits stream K and V without chunks where the passes can
  int32_t spectral_nodes;  // routed chunks: 0 pages' tree terms, 1 the tree-min bound, 2 its walk too (Tuning)
  int32_t page_sigma;      // 0: the pages' sigma read as +inf (the sum of P_B M_B; Tuning)
  // The step.
  const void* q;          // [batch][num_q_heads][head_dim]
  int32_t q_dtype;
  void* out;
  int32_t out_dtype;
  float scale;
  int32_t routing;        // sr_routing_mode
  float tau;
  float budget;
  int32_t sink_tokens;
  int32_t window_tokens;
  int32_t enforce_budget; // a head whose bound passes the budget is recomputed exactly
  int32_t follow_up;      // this launch recomputes, dense, the groups the first one flagged
  float* head_skipped_mass;
  float* head_error_bound;
  const float* sink_logits;  // [num_q_heads] or null: learned sink logits (softmax_state.h)
  float* lse;                // [batch][num_q_heads] or null
  int32_t window_left;       // -1: every token; else the sliding window (attended_run)
  int32_t window_sink_tokens;
  float logit_soft_cap;      // 0: none
  DeviceStats* stats;     // null: no statistics for this step
  int32_t run_dense;      // routing was asked for, but the step is below route_from_tokens
  int32_t batch_offset;   // first batch entry of this launch (q, out, head arrays)
  int32_t batch;          // entries in this launch
  // Workspace (sized at cache creation).
  float* part_o;          // [group slot][split][kMaxTileHeads][head_dim]
  float4* part_state;     // [group slot][split][kMaxTileHeads]: m, l, skipped_l, skipped_err
  unsigned long long* group_tally;  // [group slot]: V blocks scored << 32 | skipped, summed
                                    // by the splits, taken by the merge
  uint32_t* group_skipped;  // [group slot]: V blocks the first pass skipped (for the follow-up)
  uint32_t* next_weight;    // [group slot]: this step's split weight (adaptive launches)
  unsigned int* groups_merged;  // [1]: groups of an adaptive launch merged (the last publishes)
  unsigned int* arrivals; // [group slot]: splits done (the last one merges and resets it)
  unsigned int* redo;     // [group slot]: set by the first pass, cleared by the follow-up
#if defined(SR_PHASE_TRACE)
  unsigned long long* phase_trace;  // [kTraceBlocks][kTraceStamps] (phase_trace.cuh)
#endif
  int32_t slots[kLaunchBatch];
};

// A stream-ordered write of a few words into device memory, carried by value in a launch's
// parameters: the host buffer it came from can change as soon as the launch returns.
constexpr int kScatterWords = 896;
struct WordScatter {
  uint32_t* dst;
  int32_t count;
  uint32_t words[kScatterWords];
};

}  // namespace sr::gpu
