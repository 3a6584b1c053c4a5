// sr_merge_attention_states: checks every argument and hands the backend a merge descriptor.
#include <cstdio>

#include "core/context.h"
#include "core/defaults.h"
#include "core/enum_bits.h"
#include "core/errors.h"
#include "core/struct_args.h"

namespace sr {
namespace {

constexpr int32_t kMaxMergeStates = 64;

sr_merge_desc resolve_merge(const sr_merge_args* in) {
  require_not_null(in, "args");
  const sr_merge_args a = read_struct(in, "sr_merge_args", merge_args_defaults);
  if (a.num_states < 1 || a.num_states > kMaxMergeStates) {
    fail(SR_ERR_OUT_OF_RANGE, "num_states = %d is out of range [1, %d]", a.num_states, kMaxMergeStates);
  }
  if (a.rows < 1) fail(SR_ERR_OUT_OF_RANGE, "rows = %lld must be >= 1", static_cast<long long>(a.rows));
  if (a.head_dim < 1) fail(SR_ERR_OUT_OF_RANGE, "head_dim = %d must be >= 1", a.head_dim);
  require_not_null(a.state_outs, "args.state_outs");
  require_not_null(a.state_lses, "args.state_lses");
  require_not_null(a.out, "args.out");
  char name[64];
  for (int32_t i = 0; i < a.num_states; ++i) {
    std::snprintf(name, sizeof name, "args.state_outs[%d]", i);
    require_not_null(a.state_outs[i], name);
    std::snprintf(name, sizeof name, "args.state_lses[%d]", i);
    require_not_null(a.state_lses[i], name);
  }
  require_buffer_dtype(enum_bits(a.state_dtype), "state_dtype");
  require_buffer_dtype(enum_bits(a.out_dtype), "out_dtype");
  return sr_merge_desc{a.num_states, a.rows,      a.head_dim, a.state_outs, a.state_dtype, a.state_lses,
                       a.state_bounds, a.out,     a.out_dtype, a.lse,       a.bound,       a.stream};
}

}  // namespace
}  // namespace sr

extern "C" sr_status sr_merge_attention_states(sr_context* context, const sr_merge_args* args) {
  return sr::guard([&] {
    sr::require_not_null(context, "context");
    const sr_merge_desc merge = sr::resolve_merge(args);
    sr_backend_error err{};
    sr::check_backend(context->iface->merge_states(context->device, &merge, &err), err, "merge");
  });
}
