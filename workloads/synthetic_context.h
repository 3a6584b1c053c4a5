// Sink-structured synthetic KV caches and queries (DESIGN.md section 5), for tests, the demo
// and the benchmark. Each kv-head is one kind of head seen in trained models:
//  - sink:    the first token's key is aligned with the query and holds 50-90% of the mass,
//             its value is small; a few secondary sinks sit in the middle of the context;
//  - local:   most mass on the last 64 tokens;
//  - diffuse: Gaussian keys and queries, no structure (routing must skip little there).
// Far tokens of sink and local heads sit `gap` (13-17) logits below the maximum with a spread
// (2.5-3.5) whose upper tail is cut at 1.5 spreads, close to real attention (12-18 below). The gap grows with ln(length/4096)
// so the far tokens' total mass stays what it is at 4K, as in models trained for long
// contexts; without that, a fixed gap would hand a 512K context's far tokens most of the mass.
// Every token is a pure function of (seed, head, token), so any chunk can be made on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sr::workloads {

enum class HeadKind { Sink, Local, Diffuse };
const char* head_kind_name(HeadKind kind);

struct ContextSpec {
  int32_t kv_heads = 8;
  int32_t group = 4;  // q-heads per kv-head
  int32_t head_dim = 128;
  int64_t length = 32768;
  uint64_t seed = 1;
  double sink_fraction = 0.4;   // of kv-heads
  double local_fraction = 0.4;  // the rest are diffuse
  int32_t secondary_sinks = 3;
};

// The realistic mix, and the sink-heavy mix (every head a sink or local head).
ContextSpec mixed_spec(int64_t length, uint64_t seed);
ContextSpec sink_heavy_spec(int64_t length, uint64_t seed);

class SyntheticContext {
 public:
  explicit SyntheticContext(const ContextSpec& spec);
  const ContextSpec& spec() const { return spec_; }
  HeadKind kind(int32_t kv_head) const { return heads_[kv_head].kind; }

  // Tokens [first, first + n): k and v as [n][kv_heads][head_dim] f32.
  void tokens(int64_t first, int64_t n, float* k, float* v) const;
  // The decode query: [kv_heads * group][head_dim] f32; use with scale 1/sqrt(head_dim).
  std::vector<float> query() const;
  // Queries for several decode steps (step 0 is query()); later steps perturb the direction.
  std::vector<float> query(int32_t step) const;

 private:
  struct Head {
    HeadKind kind;
    double gap, spread;               // far tokens' logits: N(-gap, spread^2)
    std::vector<double> direction;    // unit vector the query follows
    std::vector<int64_t> secondary;   // positions of secondary sinks
  };
  double target_logit(const Head& head, int32_t kv_head, int64_t t) const;
  ContextSpec spec_;
  std::vector<Head> heads_;
};

}  // namespace sr::workloads
