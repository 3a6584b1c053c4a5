// Float64 attention on the host: the reference every backend is compared with.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace sr::workloads {

// One q-head over `length` tokens: k, v are [length] rows at row_stride floats apart.
// Returns the output row (head_dim doubles).
std::vector<double> reference_attention(const float* q, const float* k, const float* v, int64_t length,
                                        int32_t head_dim, int64_t row_stride, double scale);

// The attention variants of sr_decode_args, in float64.
struct AttentionVariant {
  double sink_logit = -INFINITY;  // -inf: no learned sink
  int32_t window_left = -1;       // -1: every token
  int32_t window_sink_tokens = 0;
  double soft_cap = 0.0;          // 0: none
};

struct ReferenceHead {
  std::vector<double> out;  // head_dim values
  double lse;               // log of the whole softmax denominator, sink included
};

// reference_attention with the variants: which tokens are attended (window), how logits are
// formed (scale, then soft cap), and the sink's weight in the denominator.
ReferenceHead reference_attention_variant(const float* q, const float* k, const float* v, int64_t length,
                                          int32_t head_dim, int64_t row_stride, double scale,
                                          const AttentionVariant& variant);

// ||a - b|| / ||b|| over n values (a measured, b reference).
double relative_error(const float* a, const double* b, int64_t n);
double relative_error(const double* a, const double* b, int64_t n);

}  // namespace sr::workloads
