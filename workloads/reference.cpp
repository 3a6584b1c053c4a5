#include "reference.h"

#include <algorithm>
#include <cmath>

namespace sr::workloads {

std::vector<double> reference_attention(const float* q, const float* k, const float* v, int64_t length,
                                        int32_t head_dim, int64_t row_stride, double scale) {
  std::vector<double> logits(static_cast<size_t>(length));
  double m = -INFINITY;
  for (int64_t t = 0; t < length; ++t) {
    double s = 0.0;
    for (int32_t d = 0; d < head_dim; ++d) s += static_cast<double>(q[d]) * k[t * row_stride + d];
    logits[t] = s * scale;
    m = std::max(m, logits[t]);
  }
  std::vector<double> out(head_dim, 0.0);
  double l = 0.0;
  for (int64_t t = 0; t < length; ++t) {
    double w = std::exp(logits[t] - m);
    l += w;
    for (int32_t d = 0; d < head_dim; ++d) out[d] += w * v[t * row_stride + d];
  }
  for (double& x : out) x /= l;
  return out;
}

ReferenceHead reference_attention_variant(const float* q, const float* k, const float* v, int64_t length,
                                          int32_t head_dim, int64_t row_stride, double scale,
                                          const AttentionVariant& variant) {
  int64_t window_begin = 0, kept_end = 0;
  if (variant.window_left >= 0) {
    window_begin = std::max<int64_t>(0, length - 1 - variant.window_left);
    kept_end = std::min<int64_t>(variant.window_sink_tokens, window_begin);
  }
  std::vector<int64_t> tokens;
  for (int64_t t = 0; t < length; ++t) {
    if (t < kept_end || t >= window_begin) tokens.push_back(t);
  }
  std::vector<double> logits;
  double m = variant.sink_logit;
  for (int64_t t : tokens) {
    double s = 0.0;
    for (int32_t d = 0; d < head_dim; ++d) s += static_cast<double>(q[d]) * k[t * row_stride + d];
    s *= scale;
    if (variant.soft_cap > 0.0) s = variant.soft_cap * std::tanh(s / variant.soft_cap);
    logits.push_back(s);
    m = std::max(m, s);
  }
  ReferenceHead head{std::vector<double>(head_dim, 0.0), 0.0};
  double l = variant.sink_logit == -INFINITY ? 0.0 : std::exp(variant.sink_logit - m);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const double w = std::exp(logits[i] - m);
    l += w;
    for (int32_t d = 0; d < head_dim; ++d) head.out[d] += w * v[tokens[i] * row_stride + d];
  }
  for (double& x : head.out) x /= l;
  head.lse = m + std::log(l);
  return head;
}

template <class T>
static double relative_error_impl(const T* a, const double* b, int64_t n) {
  double diff = 0.0, ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    ref += b[i] * b[i];
  }
  if (std::isnan(diff)) return INFINITY;
  return ref > 0.0 ? std::sqrt(diff / ref) : std::sqrt(diff);
}

double relative_error(const float* a, const double* b, int64_t n) { return relative_error_impl(a, b, n); }
double relative_error(const double* a, const double* b, int64_t n) { return relative_error_impl(a, b, n); }

}  // namespace sr::workloads
