// sr_budget_headroom: on the benchmark's synthetic contexts (seed 7), how much of V could an
// error-budget mode skip at all if it knew the TRUE error (an oracle), against what the
// certified bound of DESIGN.md section 2 allows? This says whether a target such as "budget
// 1e-3 at 512K, 1.8x faster than dense" is reachable: K is always read in full, so a V-only
// skip of a fraction f of the pages reads at best (2 - f)/2 of the dense bytes.
//
// Model (per kv-head): pages of 16 tokens; anchor pages (overlapping the first 4 or the last
// 64 tokens) are always read; the other pages are skipped in increasing order of their block
// maximum (largest logit of the page over the group's 4 q-heads) for as long as the error of
// EVERY q-head of the group stays within the budget, because a skipped page's V is skipped
// for the whole group. Skipped logits stay in the denominator: o' = o - sum_skipped p_t v_t.
// The certified bound is the ideal, global one (exact normalizer, no per-split share and no
// kBudgetSafety margin), so it is an upper limit of what the runtime's budget mode can skip.
// Two certified bounds are walked side by side: today's sum of P_B max||v||_B (docs/
// ARCHITECTURE.md 4.4) and the tree-min bound (5.2: tree_min_bound.h's page and node terms over
// certified page sigma and node lambda_max of the stored rows), with each bound's ratio to the
// true error (E/true). A third walks the runtime's compensated bound (5.3): per q-head the
// smaller of the tree-min bound and the same tree over the rows minus the layer's reference (the
// mean of the first 1024 rows), the output compensated where the second is smaller.
// Data "shared" is the mixed context with every value row shifted by a fixed vector per
// kv-head (||mu|| about the noise's norm): values that share a mean, where compensation pays.
//
// Usage: sr_budget_headroom [--budgets 1e-3,1e-2] [--data sink,mixed,shared] [length ...]
//        (default lengths 131072 524288; about a minute per 512K context; progress on stderr)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "synthetic_context.h"

namespace {

using sr::workloads::ContextSpec;
using sr::workloads::SyntheticContext;

constexpr uint64_t kSeed = 7;  // what the GPU benchmark uses
constexpr int64_t kPageTokens = 16;
constexpr int32_t kSinkTokens = 4;
constexpr int32_t kWindowTokens = 64;
// Tokens generated at a time (f32 K and V of all kv-heads: 32 MiB). A multiple of the page, so
// no page straddles two chunks and the threads, which take whole chunks, own disjoint pages.
constexpr int64_t kChunkTokens = 4096;
// Logits here lie within about [-60, 10], so exp(s - c) with the fixed frame c = 0 is safe in
// double (no overflow, no underflow to 0); summarize() checks |s| stays below this.
constexpr double kLogitLimit = 200.0;
// certified_relative_bound runs in float; the true error (double) may exceed a bound equal to
// it only by float rounding.
constexpr double kBoundRoundingSlack = 1e-5;

// Per-page sums of one context: all the analysis needs, so the f32 K/V of a 512K context
// (4 GiB) never exist at once. Frame c = 0 (see kLogitLimit).
struct PageSums {
  int32_t kv_heads = 0, group = 0, dim = 0;
  int64_t length = 0, pages = 0;
  std::vector<double> mass;        // [q-head][page]: sum_t exp(s_t)
  std::vector<double> max_logit;   // [q-head][page]: max_t s_t
  std::vector<double> weighted_v;  // [q-head][page][dim]: sum_t exp(s_t) v_t
  std::vector<double> vmax;        // [kv-head][page]: largest V-row norm
  std::vector<double> mass2;       // [q-head][page]: sum_t exp(2 s_t)
  std::vector<float> sigma;        // [kv-head][page]: certified largest singular value of the page's rows
  // [level][kv-head][node], levels 1 .. kTreeLevels: certified lambda_max of the node's rows
  std::vector<std::vector<float>> lambda;
  // The same over the rows minus the reference (reference_compensation.h), and that reference.
  std::vector<double> vmax_centred;
  std::vector<float> sigma_centred, reference;  // reference: [kv-head][dim]
  std::vector<std::vector<float>> lambda_centred;

  size_t qp(int32_t q_head, int64_t page) const { return static_cast<size_t>(q_head * pages + page); }
  int64_t nodes(int level) const { return (pages + (int64_t{1} << (2 * level)) - 1) >> (2 * level); }
  float& node_lambda(int level, int32_t kv_head, int64_t node, bool centred = false) {
    return (centred ? lambda_centred : lambda)[level][static_cast<size_t>(kv_head * nodes(level) + node)];
  }
  float node_lambda(int level, int32_t kv_head, int64_t node, bool centred = false) const {
    return (centred ? lambda_centred : lambda)[level][static_cast<size_t>(kv_head * nodes(level) + node)];
  }
};

float to_bf16_and_back(float x) { return sr::bf16_to_float(sr::float_to_bf16(x)); }

// Data "shared": the fixed shift of every value row of kv-head h (seeded, about the noise's norm).
std::vector<float> value_shift(const ContextSpec& spec, bool shared) {
  std::vector<float> shift(static_cast<size_t>(spec.kv_heads) * spec.head_dim, 0.f);
  if (!shared) return shift;
  std::mt19937_64 rng(spec.seed ^ 0x5eedULL);
  std::normal_distribution<float> normal;
  for (float& x : shift) x = normal(rng);
  return shift;
}

// Tokens [first, first + n) as the cache stores them (bf16), values shifted for "shared".
void stored_tokens(const SyntheticContext& ctx, const std::vector<float>& shift, int64_t first, int64_t n, float* k,
                   float* v) {
  ctx.tokens(first, n, k, v);
  const size_t row_floats = shift.size();
  for (size_t i = 0; i < static_cast<size_t>(n) * row_floats; ++i) {
    k[i] = to_bf16_and_back(k[i]);
    v[i] = to_bf16_and_back(v[i] + shift[i % row_floats]);
  }
}

PageSums summarize(const SyntheticContext& ctx, const std::vector<float>& shift, const char* label) {
  const ContextSpec& spec = ctx.spec();
  PageSums sums;
  sums.kv_heads = spec.kv_heads;
  sums.group = spec.group;
  sums.dim = spec.head_dim;
  sums.length = spec.length;
  sums.pages = (spec.length + kPageTokens - 1) / kPageTokens;
  const int32_t q_heads = spec.kv_heads * spec.group;
  const int32_t D = spec.head_dim;
  sums.mass.assign(static_cast<size_t>(q_heads * sums.pages), 0.0);
  sums.max_logit.assign(sums.mass.size(), -INFINITY);
  sums.weighted_v.assign(sums.mass.size() * D, 0.0);
  sums.vmax.assign(static_cast<size_t>(spec.kv_heads * sums.pages), 0.0);
  sums.mass2.assign(sums.mass.size(), 0.0);
  sums.sigma.assign(sums.vmax.size(), 0.f);
  sums.vmax_centred.assign(sums.vmax.size(), 0.0);
  sums.sigma_centred.assign(sums.vmax.size(), 0.f);
  sums.lambda.resize(sr::kTreeLevels + 1);
  sums.lambda_centred.resize(sr::kTreeLevels + 1);
  for (int level = 1; level <= sr::kTreeLevels; ++level) {
    sums.lambda[level].assign(static_cast<size_t>(spec.kv_heads * sums.nodes(level)), 0.f);
    sums.lambda_centred[level].assign(sums.lambda[level].size(), 0.f);
  }
  // The reference: per kv-head the mean of the first kReferencePages pages' rows (all finite here).
  {
    const int64_t n = std::min<int64_t>(sr::kReferencePages * kPageTokens, spec.length);
    std::vector<float> k(static_cast<size_t>(n) * spec.kv_heads * D), v(k.size());
    stored_tokens(ctx, shift, 0, n, k.data(), v.data());
    sums.reference.assign(static_cast<size_t>(spec.kv_heads) * D, 0.f);
    for (int32_t h = 0; h < spec.kv_heads; ++h) {
      for (int d = 0; d < D; ++d) {
        double sum = 0.0;
        for (int64_t t = 0; t < n; ++t) sum += v[(t * spec.kv_heads + h) * D + d];
        sums.reference[static_cast<size_t>(h) * D + d] = static_cast<float>(sum / n);
      }
    }
  }
  static_assert(kChunkTokens % (kPageTokens << (2 * sr::kTreeLevels)) == 0, "a chunk holds whole top-level nodes");

  const std::vector<float> q = ctx.query();  // q stays f32: only the cache is stored in bf16
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int64_t chunks = (spec.length + kChunkTokens - 1) / kChunkTokens;
  std::atomic<int64_t> next_chunk{0}, chunks_done{0};
  std::atomic<bool> logit_out_of_range{false};

  auto worker = [&](bool reports_progress) {
    const size_t row_floats = static_cast<size_t>(spec.kv_heads) * D;
    std::vector<float> k(kChunkTokens * row_floats), v(k.size());
    for (int64_t c; (c = next_chunk.fetch_add(1)) < chunks;) {
      const int64_t first = c * kChunkTokens;
      const int64_t n = std::min(kChunkTokens, spec.length - first);
      stored_tokens(ctx, shift, first, n, k.data(), v.data());
      for (int64_t i = 0; i < n; ++i) {
        const int64_t page = (first + i) / kPageTokens;
        for (int32_t h = 0; h < spec.kv_heads; ++h) {
          const float* krow = k.data() + (i * spec.kv_heads + h) * D;
          const float* vrow = v.data() + (i * spec.kv_heads + h) * D;
          double v_norm2 = 0.0;
          for (int d = 0; d < D; ++d) v_norm2 += static_cast<double>(vrow[d]) * vrow[d];
          double& vmax = sums.vmax[static_cast<size_t>(h * sums.pages + page)];
          vmax = std::max(vmax, std::sqrt(v_norm2));
          double centred2 = 0.0;
          for (int d = 0; d < D; ++d) {
            const double x = static_cast<double>(vrow[d]) - sums.reference[static_cast<size_t>(h) * D + d];
            centred2 += x * x;
          }
          double& vmax_centred = sums.vmax_centred[static_cast<size_t>(h * sums.pages + page)];
          vmax_centred = std::max(vmax_centred, std::sqrt(centred2) * (1.0 + 1e-6));
          for (int32_t g = 0; g < spec.group; ++g) {
            const int32_t qh = h * spec.group + g;
            const float* qrow = q.data() + static_cast<size_t>(qh) * D;
            double dot = 0.0;
            for (int d = 0; d < D; ++d) dot += static_cast<double>(qrow[d]) * krow[d];
            const double s = scale * dot;
            if (!(std::fabs(s) < kLogitLimit)) logit_out_of_range = true;
            const double weight = std::exp(s);  // frame c = 0
            const size_t at = sums.qp(qh, page);
            sums.mass[at] += weight;
            sums.mass2[at] += weight * weight;
            sums.max_logit[at] = std::max(sums.max_logit[at], s);
            double* w = sums.weighted_v.data() + at * D;
            for (int d = 0; d < D; ++d) w[d] += weight * vrow[d];
          }
        }
      }
      // The spectral summaries of the chunk's pages and nodes (whole nodes: chunks are aligned
      // to the top level), from the stored (bf16) rows of each kv-head.
      std::vector<float> rows(static_cast<size_t>(n) * D);
      for (int32_t h = 0; h < spec.kv_heads; ++h) {
        for (bool centred : {false, true}) {
          const float* c = sums.reference.data() + static_cast<size_t>(h) * D;
          for (int64_t i = 0; i < n; ++i) {
            for (int d = 0; d < D; ++d) rows[i * D + d] = v[(i * spec.kv_heads + h) * D + d] - (centred ? c[d] : 0.f);
          }
          const double slack = centred ? sr::kCentringSlack : 1.0;
          const int64_t first_page = first / kPageTokens;
          for (int level = 0; level <= sr::kTreeLevels; ++level) {
            const int64_t span = kPageTokens << (2 * level);  // tokens of a node
            for (int64_t t0 = 0; t0 < n; t0 += span) {
              const int64_t count = std::min(span, n - t0);
              const double lambda = sr::certified_gram_lambda_max(&rows[t0 * D], count, D, D);
              const int64_t node = (first_page + t0 / kPageTokens) >> (2 * level);
              if (level == 0) {
                (centred ? sums.sigma_centred : sums.sigma)[static_cast<size_t>(h * sums.pages + node)] =
                    sr::f32_at_least(std::sqrt(lambda) * slack);
              } else {
                sums.node_lambda(level, h, node, centred) = sr::f32_at_least(lambda * slack * slack);
              }
            }
          }
        }
      }
      const int64_t done = chunks_done.fetch_add(1) + 1;
      if (reports_progress && (done * 10 / chunks != (done - 1) * 10 / chunks)) {
        std::fprintf(stderr, "  %s: %lld/%lld chunks\n", label, static_cast<long long>(done),
                     static_cast<long long>(chunks));
      }
    }
  };
  const unsigned thread_count = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < thread_count; ++t) threads.emplace_back(worker, false);
  worker(true);
  for (std::thread& t : threads) t.join();
  if (logit_out_of_range) {
    std::fprintf(stderr, "a logit left [-%g, %g]: the fixed exp frame c = 0 is not safe here\n",
                 kLogitLimit, kLogitLimit);
    std::exit(1);
  }
  return sums;
}

double norm(const std::vector<double>& x) {
  double n2 = 0.0;
  for (double e : x) n2 += e * e;
  return std::sqrt(n2);
}

struct HeadResult {
  int64_t candidate_pages = 0;               // non-anchor pages
  std::vector<int64_t> oracle_pages;         // per budget: greedy stop on the true error
  std::vector<int64_t> oracle_pages_later;   // per budget: longest prefix within budget at all
  std::vector<int64_t> certified_pages;      // per budget: greedy stop on the certified bound
  std::vector<int64_t> tree_pages;           // per budget: greedy stop on the tree-min bound
  std::vector<int64_t> compensated_pages;    // per budget: greedy stop on the compensated bound
  double all_skipped_true = 0.0, all_skipped_bound = 0.0, all_skipped_tree = 0.0;  // worst over the group
  int64_t bound_violations = 0;              // (prefix, q-head, bound) with true error > bound
  std::vector<float> l1_over_true, tree_over_true;  // E_abs / true absolute error, per (prefix, q-head)
  std::vector<float> compensated_over_true;          // the compensated bound over its output's true error
};

// The tree-min bound of one q-head kept as pages join the skip set: the runtime's own walk
// (tree_walk_add, tree_min_bound.h) over the whole sequence, in f32 as the runtime sums it.
class TreeWalk {
 public:
  TreeWalk(const PageSums& sums, int32_t kv_head, bool centred = false)
      : sums_(sums), kv_head_(kv_head), centred_(centred), storage_(static_cast<size_t>(sr::tree_walk_floats(0, sums.pages))),
        walk_(sr::tree_walk_start(0, sums.pages, storage_.data())) {}
  TreeWalk(const TreeWalk& other) : TreeWalk(other.sums_, other.kv_head_, other.centred_) {}  // a fresh, empty walk
  TreeWalk& operator=(const TreeWalk&) = delete;
  // Page `page` joins the skip set with its share P (sum of p) and sum of p^2.
  void skip(int64_t page, double share, double share2) {
    const size_t at = static_cast<size_t>(kv_head_ * sums_.pages + page);
    const sr::TreePage leaf{static_cast<float>(share), static_cast<float>(share2),
                            static_cast<float>(centred_ ? sums_.vmax_centred[at] : sums_.vmax[at]),
                            centred_ ? sums_.sigma_centred[at] : sums_.sigma[at]};
    auto lambda = [&](int level, int64_t node) { return sums_.node_lambda(level, kv_head_, node, centred_); };
    sr::tree_walk_add(walk_, page, leaf, lambda, true);
  }
  double total() const { return walk_.total; }

 private:
  const PageSums& sums_;
  int32_t kv_head_;
  bool centred_;
  std::vector<float> storage_;
  sr::TreeWalk walk_;
};

// Walks the prefixes of the budget order of one kv-head. The true error need not grow with
// the prefix (a skipped page can cancel part of an earlier one's error), nor need the bound
// (||o'|| moves), so a prefix counts only if every shorter prefix also kept the group within
// the budget: the greedy stop a budget mode that skips page by page would make.
// oracle_pages_later records the longest prefix within budget regardless, to show when the
// difference matters.
HeadResult analyze_kv_head(const PageSums& sums, int32_t kv_head, const std::vector<double>& budgets) {
  const int32_t D = sums.dim, G = sums.group;
  const sr::AnchorSet anchors = sr::anchor_set(sums.length, kSinkTokens, kWindowTokens);
  std::vector<int64_t> order;
  std::vector<double> block_max(static_cast<size_t>(sums.pages), -INFINITY);
  for (int64_t p = 0; p < sums.pages; ++p) {
    const int64_t begin = p * kPageTokens, end = std::min(begin + kPageTokens, sums.length);
    if (sr::range_touches_anchor(begin, end, anchors)) continue;
    order.push_back(p);
    for (int32_t g = 0; g < G; ++g) {
      block_max[p] = std::max(block_max[p], sums.max_logit[sums.qp(kv_head * G + g, p)]);
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return block_max[a] < block_max[b]; });

  // Exact outputs o_g = sum_t p_t v_t and what skipping takes away, skipped_g = sum p_t v_t
  // over skipped tokens (summed directly, not as o - o', so there is no cancellation).
  std::vector<double> normalizer(G, 0.0), out_norm(G);
  std::vector<std::vector<double>> out(G, std::vector<double>(D, 0.0));
  std::vector<std::vector<double>> skipped(G, std::vector<double>(D, 0.0));
  for (int32_t g = 0; g < G; ++g) {
    const int32_t qh = kv_head * G + g;
    for (int64_t p = 0; p < sums.pages; ++p) {
      normalizer[g] += sums.mass[sums.qp(qh, p)];
      const double* w = sums.weighted_v.data() + sums.qp(qh, p) * D;
      for (int d = 0; d < D; ++d) out[g][d] += w[d];
    }
    for (double& x : out[g]) x /= normalizer[g];
    out_norm[g] = norm(out[g]);
  }

  HeadResult r;
  r.candidate_pages = static_cast<int64_t>(order.size());
  const size_t B = budgets.size();
  r.oracle_pages.assign(B, 0);
  r.oracle_pages_later.assign(B, 0);
  r.certified_pages.assign(B, 0);
  r.tree_pages.assign(B, 0);
  r.compensated_pages.assign(B, 0);
  std::vector<bool> oracle_holding(B, true), certified_holding(B, true), tree_holding(B, true), compensated_holding(B, true);
  std::vector<double> abs_bound(G, 0.0), error(D), kept_out(D), skipped_share(G, 0.0);
  std::vector<TreeWalk> trees(static_cast<size_t>(G), TreeWalk(sums, kv_head));
  std::vector<TreeWalk> centred_trees(static_cast<size_t>(G), TreeWalk(sums, kv_head, true));
  const float* reference = sums.reference.data() + static_cast<size_t>(kv_head) * D;
  for (size_t k = 1; k <= order.size(); ++k) {
    const int64_t page = order[k - 1];
    const double vmax = sums.vmax[static_cast<size_t>(kv_head * sums.pages + page)];
    double worst_true = 0.0, worst_bound = 0.0, worst_tree = 0.0, worst_compensated = 0.0;
    for (int32_t g = 0; g < G; ++g) {
      const size_t at = sums.qp(kv_head * G + g, page);
      const double* w = sums.weighted_v.data() + at * D;
      for (int d = 0; d < D; ++d) skipped[g][d] += w[d];
      abs_bound[g] += sums.mass[at] / normalizer[g] * vmax;  // P_block * vmax_block
      trees[g].skip(page, sums.mass[at] / normalizer[g], sums.mass2[at] / (normalizer[g] * normalizer[g]));
      centred_trees[g].skip(page, sums.mass[at] / normalizer[g], sums.mass2[at] / (normalizer[g] * normalizer[g]));
      skipped_share[g] += sums.mass[at] / normalizer[g];
      for (int d = 0; d < D; ++d) {
        error[d] = skipped[g][d] / normalizer[g];
        kept_out[d] = out[g][d] - error[d];
      }
      const double true_rel = norm(error) / out_norm[g];
      // The runtime's bound function (float): abs / (||o'|| - abs), inf when not positive.
      const double bound = sr::certified_relative_bound(static_cast<float>(abs_bound[g]),
                                                        static_cast<float>(norm(kept_out)));
      const double tree = sr::certified_relative_bound(static_cast<float>(trees[g].total()),
                                                       static_cast<float>(norm(kept_out)));
      // Compensated (5.3): where the centred tree is the smaller, the output takes P_S c and
      // its error is what the centred rows leave.
      const bool compensates = sr::compensation_pays(static_cast<float>(trees[g].total()),
                                                     static_cast<float>(centred_trees[g].total()));
      std::vector<double> compensated_error(D), compensated_out(D);
      for (int d = 0; d < D; ++d) {
        compensated_error[d] = error[d] - (compensates ? skipped_share[g] * reference[d] : 0.0);
        compensated_out[d] = out[g][d] - compensated_error[d];
      }
      const double compensated_true = norm(compensated_error) / out_norm[g];
      const double compensated = sr::certified_relative_bound(
          static_cast<float>(compensates ? centred_trees[g].total() : trees[g].total()),
          static_cast<float>(norm(compensated_out)));
      const struct {
        const char* name;
        double truth, value;
      } bounds[] = {{"sum of norms", true_rel, bound}, {"tree-min", true_rel, tree}, {"compensated", compensated_true, compensated}};
      for (const auto& b : bounds) {
        if (b.truth > b.value * (1.0 + kBoundRoundingSlack)) {
          if (r.bound_violations++ < 5) {
            std::fprintf(stderr, "BOUND VIOLATED (%s): kv-head %d q-head %d prefix %zu: true %.6e > bound %.6e\n",
                         b.name, kv_head, kv_head * G + g, k, b.truth, b.value);
          }
        }
      }
      const double true_abs = norm(error);
      if (true_abs > 0.0) {
        r.l1_over_true.push_back(static_cast<float>(abs_bound[g] / true_abs));
        r.tree_over_true.push_back(static_cast<float>(trees[g].total() / true_abs));
      }
      if (norm(compensated_error) > 0.0) {
        r.compensated_over_true.push_back(static_cast<float>(
            (compensates ? centred_trees[g].total() : trees[g].total()) / norm(compensated_error)));
      }
      worst_compensated = std::max(worst_compensated, compensated);
      worst_true = std::max(worst_true, true_rel);
      worst_bound = std::max(worst_bound, bound);
      worst_tree = std::max(worst_tree, tree);
    }
    for (size_t b = 0; b < B; ++b) {
      const bool oracle_ok = worst_true <= budgets[b];
      oracle_holding[b] = oracle_holding[b] && oracle_ok;
      if (oracle_holding[b]) r.oracle_pages[b] = static_cast<int64_t>(k);
      if (oracle_ok) r.oracle_pages_later[b] = static_cast<int64_t>(k);
      certified_holding[b] = certified_holding[b] && worst_bound <= budgets[b];
      if (certified_holding[b]) r.certified_pages[b] = static_cast<int64_t>(k);
      tree_holding[b] = tree_holding[b] && worst_tree <= budgets[b];
      if (tree_holding[b]) r.tree_pages[b] = static_cast<int64_t>(k);
      compensated_holding[b] = compensated_holding[b] && worst_compensated <= budgets[b];
      if (compensated_holding[b]) r.compensated_pages[b] = static_cast<int64_t>(k);
    }
    if (k == order.size()) {
      r.all_skipped_true = worst_true;
      r.all_skipped_bound = worst_bound;
      r.all_skipped_tree = worst_tree;
    }
  }
  return r;
}

double percent(int64_t part, int64_t whole) { return whole > 0 ? 100.0 * part / whole : 0.0; }

// Returns the number of (prefix, q-head) pairs whose true error exceeded the certified bound.
int64_t report_context(const char* data_name, const ContextSpec& spec, const std::vector<double>& budgets) {
  char label[64];
  std::snprintf(label, sizeof label, "%s %lld", data_name, static_cast<long long>(spec.length));
  const SyntheticContext ctx(spec);
  const auto start = std::chrono::steady_clock::now();
  const PageSums sums = summarize(ctx, value_shift(spec, std::strcmp(data_name, "shared") == 0), label);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "  %s: summarized in %.1f s\n", label, seconds);

  std::printf("== %s, %lld tokens, seed %llu: %lld pages per kv-head ==\n", data_name,
              static_cast<long long>(spec.length), static_cast<unsigned long long>(spec.seed),
              static_cast<long long>(sums.pages));
  const size_t B = budgets.size();
  std::vector<int64_t> oracle_total(B, 0), certified_total(B, 0), tree_total(B, 0), compensated_total(B, 0);
  std::vector<float> l1_over_true, tree_over_true, compensated_over_true;
  int64_t violations = 0;
  for (int32_t h = 0; h < spec.kv_heads; ++h) {
    const HeadResult r = analyze_kv_head(sums, h, budgets);
    violations += r.bound_violations;
    std::printf("kv %d %-7s (%lld non-anchor pages)", h, sr::workloads::head_kind_name(ctx.kind(h)),
                static_cast<long long>(r.candidate_pages));
    l1_over_true.insert(l1_over_true.end(), r.l1_over_true.begin(), r.l1_over_true.end());
    tree_over_true.insert(tree_over_true.end(), r.tree_over_true.begin(), r.tree_over_true.end());
    compensated_over_true.insert(compensated_over_true.end(), r.compensated_over_true.begin(), r.compensated_over_true.end());
    for (size_t b = 0; b < B; ++b) {
      oracle_total[b] += r.oracle_pages[b];
      certified_total[b] += r.certified_pages[b];
      tree_total[b] += r.tree_pages[b];
      compensated_total[b] += r.compensated_pages[b];
      std::printf(" | %.0e: oracle %6.2f%% certified %6.2f%% tree-min %6.2f%% compensated %6.2f%%", budgets[b],
                  percent(r.oracle_pages[b], r.candidate_pages), percent(r.certified_pages[b], r.candidate_pages),
                  percent(r.tree_pages[b], r.candidate_pages), percent(r.compensated_pages[b], r.candidate_pages));
      if (r.oracle_pages_later[b] != r.oracle_pages[b]) {
        std::printf(" (oracle non-monotone: within budget again at %.2f%%)",
                    percent(r.oracle_pages_later[b], r.candidate_pages));
      }
    }
    std::printf(" | all skipped: true %.3e bound %.3e tree-min %.3e\n", r.all_skipped_true, r.all_skipped_bound,
                r.all_skipped_tree);
  }
  const int64_t all_pages = sums.pages * spec.kv_heads;  // anchors included
  for (size_t b = 0; b < B; ++b) {
    const double oracle_f = static_cast<double>(oracle_total[b]) / all_pages;
    const double certified_f = static_cast<double>(certified_total[b]) / all_pages;
    const double tree_f = static_cast<double>(tree_total[b]) / all_pages;
    const double compensated_f = static_cast<double>(compensated_total[b]) / all_pages;
    // Dense reads K + V; a V-only skip of a fraction f reads K + (1 - f) V: ratio 1/(1 - f/2).
    std::printf("summary %s %lld budget %.0e: V pages skipped oracle %.2f%% certified %.2f%% tree-min %.2f%% "
                "compensated %.2f%%; bytes ratio dense/(K + kept V) oracle %.3fx certified %.3fx tree-min %.3fx "
                "compensated %.3fx\n",
                data_name, static_cast<long long>(spec.length), budgets[b], 100.0 * oracle_f, 100.0 * certified_f,
                100.0 * tree_f, 100.0 * compensated_f, 1.0 / (1.0 - oracle_f / 2), 1.0 / (1.0 - certified_f / 2),
                1.0 / (1.0 - tree_f / 2), 1.0 / (1.0 - compensated_f / 2));
  }
  auto median = [](std::vector<float>& x) {
    if (x.empty()) return 0.0;
    std::nth_element(x.begin(), x.begin() + x.size() / 2, x.end());
    return static_cast<double>(x[x.size() / 2]);
  };
  std::printf("summary %s %lld: median E/true over every (prefix, q-head): sum of norms %.1f, tree-min %.1f, "
              "compensated %.1f\n",
              data_name, static_cast<long long>(spec.length), median(l1_over_true), median(tree_over_true),
              median(compensated_over_true));
  if (violations > 0) std::printf("!! %lld (prefix, q-head) pairs with true error above the certified bound\n",
                                  static_cast<long long>(violations));
  std::fflush(stdout);
  return violations;
}

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  size_t from = 0;
  for (size_t comma; (comma = list.find(',', from)) != std::string::npos; from = comma + 1) {
    items.push_back(list.substr(from, comma - from));
  }
  items.push_back(list.substr(from));
  return items;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: sr_budget_headroom [--budgets 1e-3,1e-2] [--data sink,mixed,shared] [length ...]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<double> budgets{1e-3, 1e-2};
  std::vector<std::string> data{"sink", "mixed"};
  std::vector<int64_t> lengths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--budgets" || arg == "--data") && i + 1 < argc) {
      const std::vector<std::string> items = split_commas(argv[++i]);
      if (arg == "--data") {
        data = items;
      } else {
        budgets.clear();
        for (const std::string& item : items) budgets.push_back(std::strtod(item.c_str(), nullptr));
      }
    } else if (!arg.empty() && arg[0] != '-' && std::strtoll(arg.c_str(), nullptr, 10) > 0) {
      lengths.push_back(std::strtoll(arg.c_str(), nullptr, 10));
    } else {
      usage();
    }
  }
  if (lengths.empty()) lengths = {131072, 524288};
  for (const std::string& d : data) {
    if (d != "sink" && d != "mixed" && d != "shared") usage();
  }

  int64_t violations = 0;
  for (const std::string& d : data) {
    for (int64_t length : lengths) {
      const ContextSpec spec = d == "sink" ? sr::workloads::sink_heavy_spec(length, kSeed)
                                           : sr::workloads::mixed_spec(length, kSeed);
      violations += report_context(d.c_str(), spec, budgets);
    }
  }
  return violations > 0 ? 1 : 0;
}
