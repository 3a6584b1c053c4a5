// sr_decode_step: checks every argument, resolves the batch's sequences into page tables, decides
// the routing policy, and hands the backend a step descriptor with nothing left to validate.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "core/defaults.h"
#include "core/errors.h"
#include "core/enum_bits.h"
#include "core/kv_cache.h"
#include "core/routing_policy.h"
#include "core/struct_args.h"
#include "shared_arithmetic/softmax_state.h"

namespace sr {
namespace {

sr_decode_args resolve_args(const sr_kv_cache& cache, const sr_decode_args* in) {
  require_not_null(in, "args");
  sr_decode_args a = read_struct(in, "sr_decode_args", decode_args_defaults);
  const sr_cache_geometry& g = cache.geometry;
  check_layer(cache, a.layer);
  if (a.batch < 1 || a.batch > g.max_batch) {
    fail(SR_ERR_OUT_OF_RANGE, "batch = %d is out of range [1, %d] (the cache's max_batch)", a.batch, g.max_batch);
  }
  require_not_null(a.seq_ids, "args.seq_ids");
  require_not_null(a.q, "args.q");
  require_not_null(a.out, "args.out");
  if (a.num_q_heads < 1 || a.num_q_heads % g.num_kv_heads != 0) {
    fail(SR_ERR_INVALID_ARGUMENT, "num_q_heads = %d must be a positive multiple of num_kv_heads = %d",
         a.num_q_heads, g.num_kv_heads);
  }
  if (a.num_q_heads > g.max_q_heads) {
    fail(SR_ERR_OUT_OF_RANGE, "num_q_heads = %d exceeds the cache's max_q_heads = %d", a.num_q_heads, g.max_q_heads);
  }
  if (a.num_q_heads / g.num_kv_heads > 64) {
    fail(SR_ERR_UNSUPPORTED, "a GQA group of %d q-heads per kv-head is not supported (at most 64)",
         a.num_q_heads / g.num_kv_heads);
  }
  require_buffer_dtype(enum_bits(a.q_dtype), "q_dtype");
  require_buffer_dtype(enum_bits(a.out_dtype), "out_dtype");
  if (!(a.scale >= 0.f) || std::isinf(a.scale)) fail(SR_ERR_INVALID_ARGUMENT, "scale = %g must be finite and >= 0", a.scale);
  if (a.scale == 0.f) a.scale = 1.f / std::sqrt(static_cast<float>(g.head_dim));
  if (enum_bits(a.routing) < SR_ROUTING_OFF || enum_bits(a.routing) > SR_ROUTING_BUDGET) {
    fail(SR_ERR_INVALID_ARGUMENT, "routing = %d is not an sr_routing_mode value", enum_bits(a.routing));
  }
  if (a.routing != SR_ROUTING_OFF) {
    if (a.sink_tokens < 0) fail(SR_ERR_OUT_OF_RANGE, "sink_tokens = %d is negative", a.sink_tokens);
    if (a.window_tokens < 0) fail(SR_ERR_OUT_OF_RANGE, "window_tokens = %d is negative", a.window_tokens);
    if (a.sink_tokens == 0 && a.window_tokens == 0) {
      fail(SR_ERR_INVALID_ARGUMENT, "sink_tokens and window_tokens are both 0: routing needs an anchor set");
    }
    if (!(a.error_budget >= 0.f) || std::isinf(a.error_budget)) {
      fail(SR_ERR_OUT_OF_RANGE, "error_budget = %g must be finite and >= 0", a.error_budget);
    }
  }
  if (a.routing == SR_ROUTING_TAU && !(a.tau > 0.f)) fail(SR_ERR_OUT_OF_RANGE, "tau = %g must be > 0", a.tau);
  if (a.routing == SR_ROUTING_BUDGET && !(a.error_budget > 0.f)) {
    fail(SR_ERR_OUT_OF_RANGE, "error_budget = %g must be > 0 in SR_ROUTING_BUDGET mode", a.error_budget);
  }
  if (a.route_from_tokens < -1) {
    fail(SR_ERR_OUT_OF_RANGE, "route_from_tokens = %lld must be >= 0, or -1 for the backend's threshold",
         static_cast<long long>(a.route_from_tokens));
  }
  if (a.window_left < -1) {
    fail(SR_ERR_OUT_OF_RANGE, "window_left = %d must be >= 0, or -1 for no window", a.window_left);
  }
  if (a.window_sink_tokens < 0) fail(SR_ERR_OUT_OF_RANGE, "window_sink_tokens = %d is negative", a.window_sink_tokens);
  if (a.window_sink_tokens > 0 && a.window_left < 0) {
    fail(SR_ERR_INVALID_ARGUMENT, "window_sink_tokens = %d needs a sliding window (window_left >= 0)",
         a.window_sink_tokens);
  }
  if (!(a.logit_soft_cap >= 0.f) || std::isinf(a.logit_soft_cap)) {
    fail(SR_ERR_OUT_OF_RANGE, "logit_soft_cap = %g must be finite and > 0, or 0 for none", a.logit_soft_cap);
  }
  return a;
}

// Host-memory sink logits (the CPU backend's) are checked here; a GPU backend's are device
// memory the core does not read, where a NaN sink logit makes its head's output NaN.
void check_host_sink_logits(const sr_decode_args& a, const sr_context& context) {
  if (!a.sink_logits || context.backend != SR_BACKEND_CPU) return;
  for (int32_t h = 0; h < a.num_q_heads; ++h) {
    if (std::isnan(a.sink_logits[h]) || a.sink_logits[h] == INFINITY) {
      fail(SR_ERR_INVALID_ARGUMENT, "sink_logits[%d] = %g must be finite or -inf (no sink)", h, a.sink_logits[h]);
    }
  }
}

}  // namespace
}  // namespace sr

extern "C" sr_status sr_decode_step(sr_context* context, const sr_kv_cache* cache, const sr_decode_args* args) {
  return sr::guard([&] {
    sr::require_not_null(context, "context");
    sr::require_not_null(cache, "cache");
    if (context->iface != cache->context->iface || context->device_index != cache->context->device_index) {
      sr::fail(SR_ERR_INVALID_ARGUMENT, "the cache lives on %s device %d, but the context runs on %s device %d",
               sr_backend_name(cache->context->backend), cache->context->device_index,
               sr_backend_name(context->backend), context->device_index);
    }
    sr_decode_args a = sr::resolve_args(*cache, args);
    sr::check_host_sink_logits(a, *context);
    std::shared_lock<std::shared_mutex> lock(cache->mutex);
    std::vector<sr_decode_seq> seqs(static_cast<size_t>(a.batch));
    int64_t longest = 0;
    for (int32_t b = 0; b < a.batch; ++b) {
      const sr::Sequence& s = sr::find_sequence(*cache, a.seq_ids[b]);
      int64_t length = s.lengths[a.layer];
      if (length < 1) {
        sr::fail(SR_ERR_INVALID_ARGUMENT, "sequence %lld (batch entry %d) holds no tokens at layer %d",
                 static_cast<long long>(a.seq_ids[b]), b, a.layer);
      }
      seqs[b] = sr_decode_seq{s.pages.data(), length, s.slot};
      // Whether routing pays depends on the tokens attended (a window's), not the sequence's.
      longest = std::max(longest, sr::attended_tokens(sr::visible_tokens(length, a.window_left, a.window_sink_tokens), length));
    }
    sr_step_desc step{};
    step.layer = a.layer;
    step.batch = a.batch;
    step.num_q_heads = a.num_q_heads;
    step.group = a.num_q_heads / cache->geometry.num_kv_heads;
    step.seqs = seqs.data();
    step.q = a.q;
    step.q_dtype = a.q_dtype;
    step.out = a.out;
    step.out_dtype = a.out_dtype;
    step.scale = a.scale;
    step.routing = sr::decide_routing(a, longest, context->iface->route_from_tokens);
    step.head_skipped_mass = a.head_skipped_mass;
    step.head_error_bound = a.head_error_bound;
    step.collect_stats = a.collect_stats;
    step.stream = a.stream;
    step.sink_logits = a.sink_logits;
    step.lse = a.lse;
    step.window_left = a.window_left;
    step.window_sink_tokens = a.window_sink_tokens;
    step.logit_soft_cap = a.logit_soft_cap;
    sr_backend_error err{};
    sr::check_backend(context->iface->decode(context->device, cache->storage, &step, &err), err, "decode");
  });
}
