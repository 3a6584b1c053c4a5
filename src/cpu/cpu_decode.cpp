// One decode step on the CPU: plan the splits, run the split kernel on the pool, merge the
// partial softmax states per q-head, enforce the error budget by exact recomputation, write
// outputs and statistics.
#include <algorithm>
#include <cmath>
#include <vector>

#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/split_plan.h"
#include "cpu/cpu_backend.h"

namespace sr::cpu {
namespace {

struct WorkItem {
  int32_t b;
  int32_t kv_head;
  int64_t begin, end;  // begin is page aligned
  int64_t first_row;   // the first attended token, >= begin
};

struct Step {
  const sr_step_desc& args;
  LayerView layer;
  int32_t group, head_dim;
  std::vector<float> q;               // [batch][q_heads][head_dim], scaled
  std::vector<WorkItem> items;
  std::vector<int64_t> first_item;    // [batch * kv_heads + 1]: items of one (b, kv-head)
  std::vector<SoftmaxPartial> partials;  // [item][group]
  std::vector<float> o;                  // [item][group][head_dim]
  std::vector<int64_t> blocks, skipped;  // [item]
  std::vector<VisibleTokens> visible;    // [batch]
};

void run_items(sr_backend_device* device, Step& step, const RoutingConfig& routing,
               const std::vector<int64_t>& which) {
  const int32_t G = step.group, D = step.head_dim;
  device->pool->parallel_for(static_cast<int64_t>(which.size()), [&](int64_t n) {
    int64_t i = which[n];
    const WorkItem& item = step.items[i];
    const sr_decode_seq& seq = step.args.seqs[item.b];
    SplitTask task{};
    task.pages = seq.pages;
    task.length = seq.length;
    task.kv_head = item.kv_head;
    task.begin = item.begin;
    task.end = item.end;
    task.q = step.q.data() + (static_cast<int64_t>(item.b) * step.args.num_q_heads + item.kv_head * G) * D;
    task.group = G;
    task.visible = step.visible[item.b];
    task.first_row = item.first_row;
    task.sink_logits = step.args.sink_logits ? step.args.sink_logits + item.kv_head * G : nullptr;
    task.soft_cap = step.args.logit_soft_cap;
    task.partial = step.partials.data() + i * G;
    task.o = step.o.data() + i * G * D;
    device->split_kernel(step.layer, routing, task);
    step.blocks[i] = task.blocks_total;
    step.skipped[i] = task.blocks_skipped;
  });
}

struct HeadResult {
  float skipped_mass;
  float bound;
};

// Merge the splits of (b, kv-head) in order and write the group's outputs.
void finish_group(Step& step, int32_t b, int32_t kv_head, HeadResult* results) {
  const int32_t G = step.group, D = step.head_dim;
  const sr_step_desc& a = step.args;
  std::vector<float> acc(D);
  int64_t first = step.first_item[b * step.layer.kv_heads + kv_head];
  int64_t last = step.first_item[b * step.layer.kv_heads + kv_head + 1];
  for (int32_t g = 0; g < G; ++g) {
    SoftmaxPartial total = empty_partial();
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t i = first; i < last; ++i) {
      const SoftmaxPartial& part = step.partials[i * G + g];
      MergeScales s = merge_scales(total.m, part.m);
      const float* o = step.o.data() + (i * G + g) * D;
      for (int32_t d = 0; d < D; ++d) acc[d] = acc[d] * s.a + o[d] * s.b;
      total = merge_partials(total, part, s);
    }
    int32_t h = kv_head * G + g;
    if (a.sink_logits) {  // the sink: weight in the denominator, no value
      MergeScales s = merge_scales(total.m, a.sink_logits[h]);
      for (int32_t d = 0; d < D; ++d) acc[d] *= s.a;
      total = merge_partials(total, sink_partial(a.sink_logits[h]), s);
    }
    int64_t out_row = (static_cast<int64_t>(b) * a.num_q_heads + h) * D;
    float inv_l = 1.f / total.l;
    double norm2 = 0.0;
    for (int32_t d = 0; d < D; ++d) {
      float value = acc[d] * inv_l;
      norm2 += static_cast<double>(value) * value;
      store_from_float(a.out, out_row + d, a.out_dtype, value);
    }
    if (a.lse) a.lse[static_cast<int64_t>(b) * a.num_q_heads + h] = partial_lse(total);
    results[g].skipped_mass = total.skipped_l * inv_l;
    results[g].bound = certified_relative_bound(total.skipped_err * inv_l, static_cast<float>(std::sqrt(norm2)));
  }
}

}  // namespace

sr_status decode(sr_backend_device* device, sr_backend_storage* storage, const sr_step_desc* desc,
                 sr_backend_error* /*err: the core validated the step; nothing here can fail but allocation*/) {
  const sr_step_desc& a = *desc;
  const sr_cache_geometry& g = storage->geometry;
  Step step{a, {}, a.group, g.head_dim, {}, {}, {}, {}, {}, {}, {}, {}};
  step.layer = LayerView{storage->k_layer(a.layer),       storage->v_layer(a.layer),
                         storage->vnorm_layer(a.layer),   storage->vspectral_layer(a.layer),
                         storage->k_scale_layer(a.layer), storage->v_scale_layer(a.layer),
                         g.num_kv_heads,                  g.head_dim,
                         g.page_tokens,                   g.dtype,
                         storage->vcentred_layer(a.layer), device->compensate ? storage->reference_layer(a.layer) : nullptr};
  const int64_t q_elements = static_cast<int64_t>(a.batch) * a.num_q_heads * g.head_dim;
  step.q.resize(q_elements);
  for (int64_t i = 0; i < q_elements; ++i) step.q[i] = load_as_float(a.q, i, a.q_dtype) * a.scale;

  // Each sequence's attended tokens: [0, kept_end) and [window_begin, length), the second
  // range's splits starting at its page's start (rows before window_begin are masked).
  std::vector<int64_t> lengths(a.batch), window_page_start(a.batch);
  step.visible.resize(a.batch);
  for (int32_t b = 0; b < a.batch; ++b) {
    step.visible[b] = visible_tokens(a.seqs[b].length, a.window_left, a.window_sink_tokens);
    window_page_start[b] = step.visible[b].window_begin / g.page_tokens * g.page_tokens;
    lengths[b] = step.visible[b].kept_end + (a.seqs[b].length - window_page_start[b]);
  }
  SplitLimits limits{4 * static_cast<int64_t>(device->pool->size()), 512, kMaxSplitTokens};
  int64_t split_tokens = plan_split_tokens(lengths.data(), a.batch, g.num_kv_heads, g.page_tokens, limits);
  step.first_item.reserve(static_cast<size_t>(a.batch) * g.num_kv_heads + 1);
  for (int32_t b = 0; b < a.batch; ++b) {
    const VisibleTokens& v = step.visible[b];
    const int64_t length = a.seqs[b].length;
    for (int32_t h = 0; h < g.num_kv_heads; ++h) {
      step.first_item.push_back(static_cast<int64_t>(step.items.size()));
      for (int64_t t = 0; t < v.kept_end; t += split_tokens) {
        step.items.push_back(WorkItem{b, h, t, std::min(t + split_tokens, v.kept_end), t});
      }
      for (int64_t t = window_page_start[b]; t < length; t += split_tokens) {
        step.items.push_back(WorkItem{b, h, t, std::min(t + split_tokens, length), std::max(t, v.window_begin)});
      }
    }
  }
  step.first_item.push_back(static_cast<int64_t>(step.items.size()));
  const size_t n_items = step.items.size();
  step.partials.resize(n_items * step.group);
  step.o.resize(n_items * step.group * g.head_dim);
  step.blocks.resize(n_items);
  step.skipped.resize(n_items);

  const RoutingConfig& routing = a.routing;
  std::vector<int64_t> all(n_items);
  for (size_t i = 0; i < n_items; ++i) all[i] = static_cast<int64_t>(i);
  run_items(device, step, routing, all);

  const int32_t G = step.group;
  std::vector<HeadResult> results(static_cast<size_t>(a.batch) * a.num_q_heads);
  std::vector<int64_t> redo_items;
  std::vector<int32_t> redo_groups;
  for (int32_t b = 0; b < a.batch; ++b) {
    for (int32_t h = 0; h < g.num_kv_heads; ++h) {
      HeadResult* r = results.data() + static_cast<int64_t>(b) * a.num_q_heads + h * G;
      finish_group(step, b, h, r);
      bool over = false;
      for (int32_t i = 0; i < G; ++i) over = over || !(r[i].bound <= routing.error_budget);
      if (routing.enforce_budget && over) {
        redo_groups.push_back(b * g.num_kv_heads + h);
        int64_t bh = static_cast<int64_t>(b) * g.num_kv_heads + h;
        for (int64_t i = step.first_item[bh]; i < step.first_item[bh + 1]; ++i) redo_items.push_back(i);
      }
    }
  }
  if (!redo_groups.empty()) {
    RoutingConfig exact = routing;
    exact.mode = SR_ROUTING_OFF;
    run_items(device, step, exact, redo_items);
    for (int32_t bh : redo_groups) {
      int32_t b = bh / g.num_kv_heads, h = bh % g.num_kv_heads;
      finish_group(step, b, h, results.data() + static_cast<int64_t>(b) * a.num_q_heads + h * G);
    }
  }

  double max_mass = 0.0, max_bound = 0.0;
  for (size_t i = 0; i < results.size(); ++i) {
    if (a.head_skipped_mass) a.head_skipped_mass[i] = results[i].skipped_mass;
    if (a.head_error_bound) a.head_error_bound[i] = results[i].bound;
    max_mass = std::max(max_mass, static_cast<double>(results[i].skipped_mass));
    max_bound = std::max(max_bound, static_cast<double>(results[i].bound));
  }
  if (a.collect_stats) {
    int64_t blocks = 0, skipped = 0;
    for (size_t i = 0; i < n_items; ++i) {
      blocks += step.blocks[i];
      skipped += step.skipped[i];
    }
    std::lock_guard<std::mutex> lock(device->stats_mutex);
    sr_decode_stats& s = device->stats;
    s.steps += 1;
    s.steps_run_dense += routing.run_dense;
    s.heads += static_cast<int64_t>(a.batch) * a.num_q_heads;
    s.blocks_total += blocks;
    s.blocks_v_skipped += skipped;
    s.heads_recomputed += static_cast<int64_t>(redo_groups.size()) * G;
    s.max_skipped_mass = std::max(s.max_skipped_mass, max_mass);
    s.max_error_bound = std::max(s.max_error_bound, max_bound);
  }
  return SR_OK;
}

}  // namespace sr::cpu
