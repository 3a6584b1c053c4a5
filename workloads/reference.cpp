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
