// sr_merge_attention_states on the CPU: one row (batch entry, q-head) at a time, in f32, with
// the shared merge arithmetic (softmax_state.h, "merging attention states").
#include <cmath>
#include <new>
#include <vector>

#include "shared_arithmetic/softmax_state.h"
#include "cpu/cpu_backend.h"

namespace sr::cpu {

sr_status merge_states(sr_backend_device* /*device*/, const sr_merge_desc* desc, sr_backend_error* err) {
  const sr_merge_desc& a = *desc;
  const int32_t D = a.head_dim;
  std::vector<float> acc, state;
  try {
    acc.resize(D);
    state.resize(D);
  } catch (const std::bad_alloc&) {
    set_backend_error(err, "could not allocate %d floats for a merged row", 2 * D);
    return SR_ERR_OUT_OF_MEMORY;
  }
  for (int64_t r = 0; r < a.rows; ++r) {
    StateMerge merge;
    float abs_bound = 0.f;
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int32_t i = 0; i < a.num_states; ++i) {
      float weight;
      const float factor = state_merge_add(merge, a.state_lses[i][r], &weight);
      double norm2 = 0.0;
      for (int32_t d = 0; d < D; ++d) {
        state[d] = load_as_float(a.state_outs[i], r * D + d, a.state_dtype);
        norm2 += static_cast<double>(state[d]) * state[d];
        acc[d] = acc[d] * factor + weight * state[d];
      }
      const float* bounds = a.state_bounds ? a.state_bounds[i] : nullptr;
      const float state_abs =
          bounds ? absolute_from_relative_bound(bounds[r], static_cast<float>(std::sqrt(norm2))) : 0.f;
      abs_bound = abs_bound * factor + (weight > 0.f ? weight * state_abs : 0.f);
    }
    // Every state empty (lse = -inf): no key was attended; the output is zero.
    const float inv_s = merge.s > 0.f ? 1.f / merge.s : 0.f;
    double norm2 = 0.0;
    for (int32_t d = 0; d < D; ++d) {
      const float value = acc[d] * inv_s;
      norm2 += static_cast<double>(value) * value;
      store_from_float(a.out, r * D + d, a.out_dtype, value);
    }
    if (a.lse) a.lse[r] = merge.s > 0.f ? state_merge_lse(merge) : -INFINITY;
    if (a.bound) a.bound[r] = certified_relative_bound(abs_bound * inv_s, static_cast<float>(std::sqrt(norm2)));
  }
  return SR_OK;
}

}  // namespace sr::cpu
