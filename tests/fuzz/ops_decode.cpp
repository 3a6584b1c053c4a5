// sr_decode_step, dense and routed, with arbitrary options; on success the outputs are checked
// against a float64 reference over the shadow model's K/V: dense within rounding, routed within
// the certified bound (and the error budget where the mode promises it).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "c_callers.h"
#include "dtype_rounding.h"
#include "harness.h"

namespace sr_fuzz {
namespace {

// Sets an element type field; returns the type the harness lays buffers out in (F32 for the
// values the call must reject, which are then never read as an enum here).
sr_dtype pick_dtype(uint8_t b, sr_dtype& field, Expectation& e) {
  if (b >= 0xF8) {
    // Unknown values, "the cache's own" (sr_kv_io only), and FP8 (a cache element type only).
    e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT});
    const int32_t refused[3] = {5, SR_DTYPE_CACHE, SR_DTYPE_FP8_E4M3};
    store_raw(field, refused[b % 3]);
    return SR_DTYPE_F32;
  }
  const sr_dtype dtypes[4] = {SR_DTYPE_F32, SR_DTYPE_F32, SR_DTYPE_F16, SR_DTYPE_BF16};
  field = dtypes[b % 4];
  return field;
}

// Relative rounding of one output element stored as dtype.
double output_rounding(sr_dtype dtype) {
  switch (dtype) {
    case SR_DTYPE_F16: return 1.0 / 1024;
    case SR_DTYPE_BF16: return 1.0 / 128;
    default: return 1e-6;
  }
}

struct Reference {
  std::vector<double> out;  // [head_dim]
  double norm = 0;          // ||out||
  double tolerance = 0;     // f32 arithmetic and output rounding, not routing
  double lse = 0;           // log of the whole softmax denominator
};

// The attention variants of a step (sr_decode_args, 0.3.0).
struct Variant {
  int32_t window_left = -1, window_sink_tokens = 0;
  double soft_cap = 0, sink_logit = -INFINITY;
};

// Float64 attention of one q-head over one sequence's tokens of one layer (as stored).
Reference reference_head(const ShadowCache& model, const ShadowSequence& s, int32_t layer, int32_t kv_head,
                         const float* q, double scale, sr_dtype out_dtype, const Variant& var) {
  const sr_kv_cache_options& o = model.options();
  const int32_t D = o.head_dim;
  const int64_t n = model.length(s, layer), row = model.row_elements();
  int64_t window_begin = 0, kept_end = 0;
  if (var.window_left >= 0) {
    window_begin = std::max<int64_t>(0, n - 1 - var.window_left);
    kept_end = std::min<int64_t>(var.window_sink_tokens, window_begin);
  }
  auto attended = [&](int64_t t) { return t < kept_end || t >= window_begin; };
  std::vector<double> logits(static_cast<size_t>(n), -INFINITY);
  double max_logit = var.sink_logit, max_abs_terms = 0, max_v_norm = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (!attended(t)) continue;
    const float* k = s.k[layer].data() + t * row + kv_head * D;
    const float* v = s.v[layer].data() + t * row + kv_head * D;
    double dot = 0, abs_terms = 0, v_norm = 0;
    for (int32_t d = 0; d < D; ++d) {
      dot += static_cast<double>(q[d]) * k[d];
      abs_terms += std::fabs(static_cast<double>(q[d]) * k[d]);
      v_norm += static_cast<double>(v[d]) * v[d];
    }
    logits[t] = scale * dot;
    if (var.soft_cap > 0) logits[t] = var.soft_cap * std::tanh(logits[t] / var.soft_cap);
    max_logit = std::fmax(max_logit, logits[t]);
    max_abs_terms = std::fmax(max_abs_terms, scale * abs_terms);
    max_v_norm = std::fmax(max_v_norm, std::sqrt(v_norm));
  }
  Reference r;
  r.out.assign(D, 0.0);
  double l = var.sink_logit == -INFINITY ? 0.0 : std::exp(var.sink_logit - max_logit);
  for (int64_t t = 0; t < n; ++t) {
    if (!attended(t)) continue;
    const double w = std::exp(logits[t] - max_logit);
    l += w;
    const float* v = s.v[layer].data() + t * row + kv_head * D;
    for (int32_t d = 0; d < D; ++d) r.out[d] += w * v[d];
  }
  for (int32_t d = 0; d < D; ++d) {
    r.out[d] /= l;
    r.norm += r.out[d] * r.out[d];
  }
  r.norm = std::sqrt(r.norm);
  r.lse = max_logit + std::log(l);
  // f32 logits are off by up to ~D ulp of the summed magnitudes; a logit error e moves the
  // output by at most 2e * max ||v||. Plus exp, the sums over tokens, and the output's dtype.
  const double logit_error = (D + 8) * 6e-8 * (1 + max_abs_terms) + 1e-6 + n * 6e-8;
  r.tolerance = 2 * logit_error * max_v_norm + output_rounding(out_dtype) * r.norm + 1e-30 +
                (out_dtype == SR_DTYPE_F16 ? 6e-8 * std::sqrt(static_cast<double>(D)) : 0.0);
  return r;
}

}  // namespace

void Harness::decode_step() {
  ContextSlot& context = *pick_context();
  CacheSlot* slot = pick_cache();
  if (!slot->handle) {
    Expectation e;
    e.must_fail({SR_ERR_INVALID_ARGUMENT});
    sr_decode_args args;
    sr_decode_args_default(&args, sizeof args);
    e.check(sr_decode_step(context.handle, nullptr, &args), "sr_decode_step(NULL cache)");
    return;
  }
  const ShadowCache& model = *slot->model;
  const sr_kv_cache_options& o = model.options();
  Expectation e;
  if (!context.handle) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  sr_decode_args a;
  sr_decode_args_default(&a, sizeof a);
  a.layer = pick_layer(*slot, e);
  const bool layer_ok = a.layer >= 0 && a.layer < o.num_layers;

  uint8_t b = in_.u8();
  a.batch = b < 0xF0 ? b % 4 + 1 : (b % 3 == 0 ? 0 : b % 3 == 1 ? -1 : o.max_batch + 1);
  if (a.batch < 1 || a.batch > o.max_batch) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  const int32_t batch = a.batch >= 1 ? a.batch : 1;  // entries the buffers hold
  std::vector<sr_seq_id> seq_ids(batch);
  std::vector<const ShadowSequence*> seqs(batch);
  for (int32_t i = 0; i < batch; ++i) {
    seq_ids[i] = pick_sequence(*slot, e);
    seqs[i] = slot->model->find(seq_ids[i]);
    if (seqs[i] && layer_ok && model.length(*seqs[i], a.layer) < 1) {
      e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
    }
  }

  const int32_t kv = o.num_kv_heads;
  b = in_.u8();
  if (b % 8 < 6) {
    a.num_q_heads = kv * (b % 3 + 1);
    if (a.num_q_heads > o.max_q_heads) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  } else if (b % 8 == 6) {
    a.num_q_heads = kv > 1 ? kv + 1 : (b & 0x80 ? 0 : -kv);  // not a positive multiple
    e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  } else {
    a.num_q_heads = o.max_q_heads + kv;
    e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT, SR_ERR_UNSUPPORTED});
  }
  const int32_t q_heads = a.num_q_heads >= 1 ? a.num_q_heads : 1;
  const sr_dtype q_dtype = pick_dtype(in_.u8(), a.q_dtype, e);
  const sr_dtype out_dtype = pick_dtype(in_.u8(), a.out_dtype, e);

  b = in_.u8();
  const float scales[8] = {0.f, 0.f, 0.f, 0.f, 0.25f, 2.f, -1.f, NAN};
  a.scale = b % 8 == 7 && (b & 0x80) ? INFINITY : scales[b % 8];
  if (!(a.scale >= 0.f) || std::isinf(a.scale)) e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});

  b = in_.u8();
  const bool bad_routing = b % 4 == 3;
  // `routing` is what the harness reasons with; the field may hold a value outside the enum.
  const sr_routing_mode routing = bad_routing ? SR_ROUTING_OFF : static_cast<sr_routing_mode>(b % 4);
  if (bad_routing) {
    store_raw(a.routing, b & 0x80 ? -1 : 3);
    e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
  } else {
    a.routing = routing;
  }
  const bool routed = routing == SR_ROUTING_TAU || routing == SR_ROUTING_BUDGET;

  b = in_.u8();
  const float taus[8] = {12.f, 12.f, 12.f, 0.5f, 4.f, INFINITY, 0.f, NAN};
  a.tau = b % 8 == 7 && (b & 0x80) ? -1.f : taus[b % 8];
  if (!(a.tau > 0.f)) {
    if (routing == SR_ROUTING_TAU) {
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
    } else {
      e.unsure();  // the header does not say whether other modes look at tau
    }
  }
  b = in_.u8();
  const int32_t sinks[8] = {4, 4, 4, 4, 0, 1, 16, -1};
  a.sink_tokens = b % 8 == 7 && (b & 0x80) ? std::numeric_limits<int32_t>::max() : sinks[b % 8];
  b = in_.u8();
  const int32_t windows[8] = {64, 64, 64, 64, 0, 1, 8, -1};
  a.window_tokens = b % 8 == 7 && (b & 0x80) ? std::numeric_limits<int32_t>::max() : windows[b % 8];
  if (a.sink_tokens < 0 || a.window_tokens < 0) {
    if (routed) {
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
    } else {
      e.unsure();
    }
  } else if (routed && a.sink_tokens == 0 && a.window_tokens == 0) {
    e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});  // no anchor set
  }
  b = in_.u8();
  const float budgets[8] = {1e-3f, 1e-3f, 1e-3f, 1e-3f, 0.f, 0.1f, 1e-6f, -1.f};
  a.error_budget = b % 8 == 7 && (b & 0x80) ? (b & 0x40 ? NAN : INFINITY) : budgets[b % 8];
  const bool budget_ok = a.error_budget >= 0.f && std::isfinite(a.error_budget);
  if (routing == SR_ROUTING_BUDGET && !(a.error_budget > 0.f && budget_ok)) {
    e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  } else if (!budget_ok) {
    e.unsure();  // a negative or non-finite cap in TAU mode, or ignored when routing is off
  }

  const uint8_t flags = in_.u8();
  const bool want_mass = flags & 1, want_bound = flags & 2;
  a.collect_stats = flags & 4 ? 1 : 0;
  const int null_arg = flags >> 3 & 7;  // 1: seq_ids, 2: q, 3: out
  if (null_arg >= 1 && null_arg <= 3) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  if (flags & 0x80) slot->contents_dirty = true;  // re-read the cache: decode must not change it
  a.struct_size = pick_struct_size(sizeof a, e);
  ValueSource values(in_.u8() + 977 * calls_, in_.u8());
  // Where routing starts: the backend's threshold, every length, past every sequence, or invalid.
  b = in_.u8();
  const int64_t route_from[8] = {-1, -1, -1, 0, 0, 5, 1 << 20, -2};
  a.route_from_tokens = b % 8 == 7 && (b & 0x80) ? std::numeric_limits<int64_t>::min() : route_from[b % 8];
  if (a.route_from_tokens < -1 && a.struct_size == sizeof a) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  // The threshold this step runs under, where the harness can know it (-1: it cannot).
  int64_t threshold = a.struct_size == sizeof a ? a.route_from_tokens : -1;
  sr_backend backend = SR_BACKEND_AUTO;
  if (threshold == -1 && context.handle && sr_context_backend(context.handle, &backend) == SR_OK &&
      backend == SR_BACKEND_CPU) {
    threshold = 0;  // the CPU backend routes at every length
  }
  int64_t longest = 0;
  for (int32_t i = 0; i < batch; ++i) {
    if (seqs[i] && layer_ok) longest = std::max<int64_t>(longest, model.length(*seqs[i], a.layer));
  }
  const bool threshold_known = threshold >= 0;

  // The attention variants, read by the library only from a struct of today's size.
  Variant var;
  const bool variants_read = a.struct_size == sizeof a;
  b = in_.u8();
  const int32_t windows_left[8] = {-1, -1, -1, -1, 0, 7, 100, -2};
  a.window_left = windows_left[b % 8];
  const int32_t kept[4] = {0, 0, 3, -1};
  a.window_sink_tokens = kept[b / 8 % 4];
  const uint8_t b2 = in_.u8();
  const float caps[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 4.f, 30.f, -1.f};
  a.logit_soft_cap = b2 % 8 == 7 && (b2 & 0x80) ? NAN : caps[b2 % 8];
  const int sink_pick = b2 / 8 % 4;  // 0, 1: none; 2: finite; 3: one NaN
  const bool want_lse = b2 & 0x40;
  if (variants_read) {
    if (a.window_left < -1 || a.window_sink_tokens < 0 || !(a.logit_soft_cap >= 0.f)) {
      e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
    } else if (a.window_sink_tokens > 0 && a.window_left < 0) {
      e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
    }
    var.window_left = a.window_left;
    var.window_sink_tokens = a.window_sink_tokens;
    var.soft_cap = a.logit_soft_cap;
  }
  std::vector<float> sink_values(static_cast<size_t>(q_heads));
  ValueSource sink_source(in_.u8() + 131 * calls_, 0);
  for (float& x : sink_values) x = 4.f * sink_source.next();
  if (sink_pick == 3) sink_values[sink_values.size() / 2] = NAN;
  a.sink_logits = sink_pick >= 2 ? sink_values.data() : nullptr;
  const bool cpu_context = context.handle && sr_context_backend(context.handle, &backend) == SR_OK &&
                           backend == SR_BACKEND_CPU;
  if (variants_read && sink_pick == 3) {
    if (cpu_context) {
      e.must_fail({SR_ERR_INVALID_ARGUMENT, SR_ERR_OUT_OF_RANGE});
    } else {
      e.unsure();
    }
  }
  // Windows and soft-capping run on the CPU backend only so far.
  const bool cpu_only_variant = variants_read && (a.window_left >= 0 || a.logit_soft_cap > 0.f);
  if (cpu_only_variant && context.handle && !cpu_context) e.must_fail({SR_ERR_UNSUPPORTED});
  const bool run_dense = routed && threshold_known && longest < threshold;

  const int32_t D = o.head_dim;
  const size_t elements = static_cast<size_t>(batch) * q_heads * D;
  std::vector<unsigned char> q(elements * element_size(q_dtype));
  std::vector<float> q_values(elements);  // q as the library reads it
  for (size_t i = 0; i < elements; ++i) {
    store_element(q.data(), static_cast<int64_t>(i), q_dtype, values.next());
    q_values[i] = load_element(q.data(), static_cast<int64_t>(i), q_dtype);
  }
  // All-ones bytes are NaN in every dtype: an output row the library forgot stays NaN.
  std::vector<unsigned char> out(elements * element_size(out_dtype), 0xFF);
  std::vector<float> mass(static_cast<size_t>(batch) * q_heads, NAN), bound(mass.size(), NAN), lse(mass.size(), NAN);
  a.lse = want_lse ? lse.data() : nullptr;
  a.seq_ids = null_arg == 1 ? nullptr : seq_ids.data();
  a.q = null_arg == 2 ? nullptr : q.data();
  a.out = null_arg == 3 ? nullptr : out.data();
  a.head_skipped_mass = want_mass ? mass.data() : nullptr;
  a.head_error_bound = want_bound ? bound.data() : nullptr;

  sr_status st = sr_decode_step(context.handle, slot->handle, &a);
  if (!e.check(st, "sr_decode_step")) {
    for (unsigned char byte : out) FUZZ_CHECK(byte == 0xFF, "a failed sr_decode_step wrote its output");
    for (size_t i = 0; i < mass.size(); ++i) {
      FUZZ_CHECK(std::isnan(mass[i]) && std::isnan(bound[i]) && std::isnan(lse[i]),
                 "a failed sr_decode_step wrote per-head results");
    }
    return;
  }
  if (a.collect_stats) {
    context.stats_steps += 1;
    context.stats_heads += static_cast<int64_t>(a.batch) * a.num_q_heads;
    context.stats_run_dense += run_dense ? 1 : 0;
    if (routed && !threshold_known) context.run_dense_known = false;
  }

  const int32_t group = a.num_q_heads / kv;
  const double scale = a.scale == 0.f ? 1.0 / std::sqrt(static_cast<double>(D)) : a.scale;
  const bool budget_promised = routing == SR_ROUTING_BUDGET || (routing == SR_ROUTING_TAU && a.error_budget > 0.f);
  const bool exact = !routed || run_dense;  // a routed step below route_from_tokens runs dense
  for (int32_t i = 0; i < a.batch; ++i) {
    for (int32_t h = 0; h < a.num_q_heads; ++h) {
      const size_t head = static_cast<size_t>(i) * a.num_q_heads + h;
      if (variants_read && a.sink_logits) var.sink_logit = a.sink_logits[h];
      const Reference ref = reference_head(model, *seqs[i], a.layer, h / group, q_values.data() + head * D, scale,
                                           out_dtype, var);
      if (variants_read && want_lse) {
        FUZZ_CHECK(std::fabs(lse[head] - ref.lse) <= 1e-4 * (1 + std::fabs(ref.lse)),
                   "lse %.9g of batch %d q-head %d, float64 %.9g", lse[head], i, h, ref.lse);
      }
      double err2 = 0;
      for (int32_t d = 0; d < D; ++d) {
        const float x = load_element(out.data(), static_cast<int64_t>(head * D + d), out_dtype);
        FUZZ_CHECK(std::isfinite(x), "decode output (batch %d, q-head %d, element %d) is %g for finite inputs", i, h,
                   d, x);
        err2 += (x - ref.out[d]) * (x - ref.out[d]);
      }
      const double err = std::sqrt(err2);
      if (want_mass) {
        FUZZ_CHECK(mass[head] >= 0.f && mass[head] <= 1.f + 1e-5f, "skipped mass %g of head %zu", mass[head], head);
        if (exact || a.tau == INFINITY) {
          FUZZ_CHECK(mass[head] == 0.f || (!exact && routing != SR_ROUTING_TAU),
                     "skipped mass %g with nothing to skip", mass[head]);
        }
      }
      double allowed = INFINITY;
      if (want_bound) {
        FUZZ_CHECK(bound[head] >= 0.f, "per-head error bound %g of head %zu is not >= 0", bound[head], head);
        if (exact) FUZZ_CHECK(bound[head] == 0.f, "error bound %g with routing off or below its threshold", bound[head]);
        if (budget_promised) {
          FUZZ_CHECK(bound[head] <= a.error_budget, "error bound %g exceeds the budget %g", bound[head],
                     a.error_budget);
        }
        allowed = bound[head];
      }
      if (exact) allowed = 0;
      if (budget_promised) allowed = std::fmin(allowed, a.error_budget);
      if (std::isfinite(allowed)) {
        FUZZ_CHECK(err <= allowed * ref.norm * (1 + 1e-3) + ref.tolerance,
                   "decode (routing %d, tau %g, budget %g, sink %d, window %d) batch %d q-head %d over %lld tokens: "
                   "error %.3g vs float64, allowed %.3g (bound %.3g x norm %.3g + rounding %.3g)",
                   routing, a.tau, a.error_budget, a.sink_tokens, a.window_tokens, i, h,
                   static_cast<long long>(model.length(*seqs[i], a.layer)), err,
                   allowed * ref.norm + ref.tolerance, allowed, ref.norm, ref.tolerance);
      }
    }
  }
}

}  // namespace sr_fuzz
