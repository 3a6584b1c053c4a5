#include "synthetic_context.h"

#include <algorithm>
#include <cmath>

#include "random.h"

namespace sr::workloads {

const char* head_kind_name(HeadKind kind) {
  switch (kind) {
    case HeadKind::Sink: return "sink";
    case HeadKind::Local: return "local";
    default: return "diffuse";
  }
}

ContextSpec mixed_spec(int64_t length, uint64_t seed) {
  ContextSpec s;
  s.length = length;
  s.seed = seed;
  return s;
}

ContextSpec sink_heavy_spec(int64_t length, uint64_t seed) {
  ContextSpec s = mixed_spec(length, seed);
  s.sink_fraction = 0.5;
  s.local_fraction = 0.5;
  return s;
}

namespace {
enum Stream : uint64_t { kKind = 1, kGap, kSpread, kDirection, kSecondary, kLogit, kKeyNoise, kValue, kQuery };
constexpr double kKeyNoiseScale = 0.35;  // per-dimension noise of keys around their target logit
constexpr int kWindow = 64;
}  // namespace

SyntheticContext::SyntheticContext(const ContextSpec& spec) : spec_(spec) {
  const int D = spec.head_dim;
  for (int32_t h = 0; h < spec.kv_heads; ++h) {
    Head head;
    double position = (h + 0.5) / spec.kv_heads;  // kinds interleave deterministically over heads
    double pick = std::fmod(position + uniform(hash_key(spec.seed, kKind)) , 1.0);
    head.kind = pick < spec.sink_fraction ? HeadKind::Sink
                : pick < spec.sink_fraction + spec.local_fraction ? HeadKind::Local
                                                                  : HeadKind::Diffuse;
    double context_scaling = std::log(std::max<double>(1.0, static_cast<double>(spec.length) / 4096.0));
    head.gap = 13.0 + 4.0 * uniform(hash_key(spec.seed, kGap, h)) + context_scaling;
    head.spread = 2.5 + 1.0 * uniform(hash_key(spec.seed, kSpread, h));
    head.direction.resize(D);
    double norm2 = 0.0;
    for (int d = 0; d < D; ++d) {
      head.direction[d] = normal(hash_key(spec.seed, kDirection, h, d));
      norm2 += head.direction[d] * head.direction[d];
    }
    for (double& x : head.direction) x /= std::sqrt(norm2);
    if (head.kind == HeadKind::Sink && spec.length > 4 * kWindow) {
      for (int32_t i = 0; i < spec.secondary_sinks; ++i) {
        double u = uniform(hash_key(spec.seed, kSecondary, h, i));
        head.secondary.push_back(kWindow + static_cast<int64_t>(u * static_cast<double>(spec.length - 3 * kWindow)));
      }
    }
    heads_.push_back(std::move(head));
  }
}

// The logit a token's key is built to give (query direction x key, times the scale).
double SyntheticContext::target_logit(const Head& head, int32_t kv_head, int64_t t) const {
  const int64_t L = spec_.length;
  double noise = normal(hash_key(spec_.seed, kLogit, kv_head, static_cast<uint64_t>(t)));
  if (head.kind == HeadKind::Sink) {
    if (t == 0) return 0.0;  // the sink: the largest logit
    for (int64_t s : head.secondary) {
      if (t == s) return -2.0 - 0.5 * std::fabs(noise);
    }
    if (t >= L - kWindow) return -5.5 + 0.7 * noise;  // the window keeps 10-30% of the mass
  } else if (head.kind == HeadKind::Local) {
    if (t >= L - kWindow) return -1.5 + 1.0 * noise - 0.02 * static_cast<double>(L - 1 - t);
  }
  // Far tokens: the upper tail is cut at 1.5 spreads, as real attention's far logits have a
  // bounded top; a full Gaussian tail would give far tokens most of the mass.
  return -head.gap + head.spread * std::min(noise, 1.5);
}

void SyntheticContext::tokens(int64_t first, int64_t n, float* k, float* v) const {
  const int D = spec_.head_dim;
  const double sqrt_d = std::sqrt(static_cast<double>(D));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = first + i;
    for (int32_t h = 0; h < spec_.kv_heads; ++h) {
      const Head& head = heads_[h];
      float* krow = k + (i * spec_.kv_heads + h) * D;
      float* vrow = v + (i * spec_.kv_heads + h) * D;
      const uint64_t tk = static_cast<uint64_t>(t);
      if (head.kind == HeadKind::Diffuse) {
        for (int d = 0; d < D; ++d) krow[d] = static_cast<float>(normal(hash_key(spec_.seed, kKeyNoise, h, tk * 1024 + d)));
      } else {
        // key = logit * sqrt(D) * direction / |q| + noise; the query is sqrt(D) * direction,
        // so with scale 1/sqrt(D) the logit is the target plus a little noise.
        double logit = target_logit(head, h, t);
        for (int d = 0; d < D; ++d) {
          double noise = kKeyNoiseScale * normal(hash_key(spec_.seed, kKeyNoise, h, tk * 1024 + d));
          krow[d] = static_cast<float>(logit * head.direction[d] + noise / sqrt_d);
        }
      }
      bool small_value = head.kind == HeadKind::Sink && t == 0;
      double value_scale = small_value ? 0.05 : 1.0;
      for (int d = 0; d < D; ++d) {
        vrow[d] = static_cast<float>(value_scale * normal(hash_key(spec_.seed, kValue, h, tk * 1024 + d)));
      }
    }
  }
}

std::vector<float> SyntheticContext::query() const { return query(0); }

std::vector<float> SyntheticContext::query(int32_t step) const {
  const int D = spec_.head_dim;
  const double sqrt_d = std::sqrt(static_cast<double>(D));
  std::vector<float> q(static_cast<size_t>(spec_.kv_heads) * spec_.group * D);
  for (int32_t h = 0; h < spec_.kv_heads; ++h) {
    for (int32_t g = 0; g < spec_.group; ++g) {
      float* row = q.data() + (static_cast<int64_t>(h) * spec_.group + g) * D;
      uint64_t key = static_cast<uint64_t>(g) * 65536 + static_cast<uint64_t>(step);
      for (int d = 0; d < D; ++d) {
        double noise = normal(hash_key(spec_.seed, kQuery, h * 1024 + d, key));
        if (heads_[h].kind == HeadKind::Diffuse) {
          row[d] = static_cast<float>(noise);
        } else {
          row[d] = static_cast<float>(sqrt_d * heads_[h].direction[d] + 0.12 * noise);  // heads of a group differ a little
        }
      }
    }
  }
  return q;
}

}  // namespace sr::workloads
