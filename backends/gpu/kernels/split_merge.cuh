// The split merge. Each split of a (batch entry, kv-head, head tile) group leaves its partial
// state (m, l, skipped l, skipped error) and unnormalised output in the workspace; the last split
// to arrive merges them all in split order (the same bits every run) into the group's outputs
// (docs/ARCHITECTURE.md, "Merging partial states across splits").
#pragma once

#include "block_base.cuh"
#include "phase_trace.cuh"
#include "shared_arithmetic/softmax_state.h"

namespace sr::gpu {

// The group a block works for and where its splits' partial states live.
struct SplitGroup {
  int64_t b;            // batch entry (of the whole step)
  int32_t kv_head;
  int32_t tile;         // head tile of the kv-head's GQA group
  int32_t valid_heads;  // q-heads of the tile (the last tile may hold fewer than GT)
  int64_t slot;         // the group's slot in this launch's workspace
  int32_t splits;       // the group's split count
  int64_t first_slot;   // partial-state slot of its first split
};

// Reference compensation (reference_compensation.h): each head's output takes the skipped mass
// of the chunks it compensated times the layer's reference, in the split's frame. Each thread
// touches the elements write_partial_state then stores.
template <int D, int GT>
__device__ __forceinline__ void add_compensation(const DecodeParams& p, const SharedState& sh, float* reduce, int32_t kv_head) {
  const float* reference = p.vreference + static_cast<int64_t>(kv_head) * D;
  for (int i = threadIdx.x; i < GT * D; i += kThreads) reduce[i] += sh.comp_mass[i / D] * reference[i % D];
}

// This split's partial state into its slot (the output already summed into reduce[GT][D]).
template <int D, int GT>
__device__ __forceinline__ void write_partial_state(const DecodeParams& p, const SharedState& sh, const float* reduce,
                                                    int64_t split_slot) {
  float* part_o = p.part_o + split_slot * kMaxTileHeads * D;
  for (int i = threadIdx.x; i < GT * D; i += kThreads) part_o[i] = reduce[i];
  if (threadIdx.x < GT) {
    int h = threadIdx.x;
    p.part_state[split_slot * kMaxTileHeads + h] = make_float4(sh.m[h], sh.l[h], sh.skipped_l[h], sh.skipped_err[h]);
  }
}

// Counts this split's arrival (and, routed, its V blocks scored and skipped); true in the block
// of the group's last split, which then merges.
__device__ __forceinline__ bool arrives_last(const DecodeParams& p, SharedState& sh, const SplitGroup& g, int routing) {
  __syncthreads();
  if (threadIdx.x == 0) {
    if (routing != SR_ROUTING_OFF) {
      atomicAdd(&p.group_tally[g.slot], static_cast<unsigned long long>(sh.blocks) << 32 | static_cast<uint32_t>(sh.skipped));
    }
    __threadfence();
    unsigned int before = atomicAdd(&p.arrivals[g.slot], 1u);
    sh.last = before == static_cast<unsigned int>(g.splits - 1);
    sh.over = 0;
  }
  __syncthreads();
  SR_TRACE(p, kTraceArrived);
  return sh.last;
}

// The group's merged state into sh.l, sh.skipped_l, sh.skipped_err (its common maximum is only
// used inside), and its outputs, written to p.out and kept in reduce[GT][D]. Called by every
// thread of the last split's block.
template <int D, int GT>
__device__ __forceinline__ void merge_splits(const DecodeParams& p, SharedState& sh, float* reduce, const SplitGroup& g,
                                             int lane) {
  __threadfence();
  const float* group_o = p.part_o + g.first_slot * kMaxTileHeads * D;
  const float4* group_state = p.part_state + g.first_slot * kMaxTileHeads;
  const int64_t out_row0 = (g.b * p.num_q_heads + static_cast<int64_t>(g.kv_head) * p.group + g.tile * GT) * D;
  // Each split's weight in the frame of the group's largest logit (one warp per head, lanes
  // over splits), then the outputs as weighted sums over splits. The merge is a chain of L2
  // round trips, so every load of a round is issued before any is used: indices past the last
  // split are clamped to it (a valid address, no branch) and their terms dropped.
  float* split_scale = &sh.w[0][0];  // [GT][splits]: splits <= kMaxMergeSplits
  constexpr int kStatesPerLane = 4;
  constexpr int kStateRound = kWarp * kStatesPerLane;  // splits per round of state loads
  const int last_split = g.splits - 1;
  auto clamped = [last_split](int s) { return s < last_split ? s : last_split; };
  for (int h = warp_id(); h < g.valid_heads; h += kWarps) {
    // Lane's states of round s0 (m, l, skipped l, skipped error); one round holds them all up
    // to kStateRound splits, and the second pass reuses it.
    float4 st[kStatesPerLane];
    auto load_round = [&](int s0) {
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) {
        st[k] = load_coherent4(reinterpret_cast<const float*>(group_state + clamped(s0 + k * kWarp + lane) * kMaxTileHeads + h));
      }
    };
    float m = -INFINITY;
    for (int s0 = 0; s0 < g.splits; s0 += kStateRound) {
      load_round(s0);
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) m = fmaxf(m, st[k].x);  // (clamped: a real split's m)
    }
    m = warp_max(m);
    // A learned sink joins the merge as one more state (sink_partial): its logit may raise the
    // frame, and its weight adds to l with no output.
    const int32_t q_head = g.kv_head * p.group + g.tile * GT + h;
    const float sink = p.sink_logits ? p.sink_logits[q_head] : -INFINITY;
    m = fmaxf(m, sink);
    float l = 0.f, skl = 0.f, ske = 0.f;
    for (int s0 = 0; s0 < g.splits; s0 += kStateRound) {
      if (g.splits > kStateRound) load_round(s0);
#pragma unroll
      for (int k = 0; k < kStatesPerLane; ++k) {
        const int s = s0 + k * kWarp + lane;
        if (s < g.splits) {
          const float c = rescale(st[k].x, m);
          split_scale[h * g.splits + s] = c;
          l += st[k].y * c;
          skl += st[k].z * c;
          ske += st[k].w * c;
        }
      }
    }
    l = warp_sum(l);
    skl = warp_sum(skl);
    ske = warp_sum(ske);
    if (lane == 0) {
      l += rescale(sink, m);  // exp(sink - m); 0 without a sink
      sh.l[h] = l;
      sh.skipped_l[h] = skl;
      sh.skipped_err[h] = ske;
      if (p.lse) p.lse[g.b * p.num_q_heads + q_head] = m + logf(l);
    }
  }
  __syncthreads();
  SR_TRACE(p, kTraceMergeStates);
  // A thread owns 4 consecutive outputs and keeps kInFlight splits' loads in flight; the sum
  // runs in split order (the same bits every run).
  constexpr int kInFlight = 16;
  for (int i = threadIdx.x; i < g.valid_heads * D / 4; i += kThreads) {
    const int h = 4 * i / D, d = 4 * i % D;
    const float* src = group_o + h * D + d;
    const float* scale = split_scale + h * g.splits;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int s0 = 0; s0 < g.splits; s0 += kInFlight) {
      float4 x[kInFlight];
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) {
        x[k] = load_coherent4(src + static_cast<int64_t>(clamped(s0 + k)) * kMaxTileHeads * D);
      }
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) {
        if (s0 + k < g.splits) {
          const float c = scale[s0 + k];
          acc[0] = fmaf(c, x[k].x, acc[0]);
          acc[1] = fmaf(c, x[k].y, acc[1]);
          acc[2] = fmaf(c, x[k].z, acc[2]);
          acc[3] = fmaf(c, x[k].w, acc[3]);
        }
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float value = acc[e] / sh.l[h];
      store_any(p.out, out_row0 + h * D + d + e, p.out_dtype, value);
      reduce[h * D + d + e] = value;
    }
  }
}

}  // namespace sr::gpu
