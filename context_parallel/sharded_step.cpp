#include "sharded_step.h"

#include <vector>

namespace sr::cp {

sr_status decode_rank(sr_context* context, const sr_kv_cache* cache, const sr_decode_args& args,
                      const StateLayout& layout, float* state) {
  sr_decode_args a = args;
  a.out = state;
  a.out_dtype = SR_DTYPE_F32;
  a.lse = state + layout.lse_offset();
  a.head_error_bound = state + layout.bound_offset();
  return sr_decode_step(context, cache, &a);
}

sr_status merge_ranks(sr_context* context, const StateLayout& layout, const float* gathered, int32_t ranks, void* out,
                      sr_dtype out_dtype, float* lse, float* bound, void* stream) {
  if (ranks < 1) return SR_ERR_INVALID_ARGUMENT;
  std::vector<const void*> outs(static_cast<size_t>(ranks));
  std::vector<const float*> lses(outs.size()), bounds(outs.size());
  for (int32_t r = 0; r < ranks; ++r) {
    const float* s = gathered + r * layout.floats();
    outs[r] = s;
    lses[r] = s + layout.lse_offset();
    bounds[r] = s + layout.bound_offset();
  }
  sr_merge_args m;
  sr_status st = sr_merge_args_default(&m, sizeof m);
  if (st != SR_OK) return st;
  m.num_states = ranks;
  m.rows = layout.rows;
  m.head_dim = layout.head_dim;
  m.state_outs = outs.data();
  m.state_dtype = SR_DTYPE_F32;
  m.state_lses = lses.data();
  m.state_bounds = bounds.data();
  m.out = out;
  m.out_dtype = out_dtype;
  m.lse = lse;
  m.bound = bound;
  m.stream = stream;
  return sr_merge_attention_states(context, &m);
}

}  // namespace sr::cp
