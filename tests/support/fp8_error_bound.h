// What storing K and V in FP8 E4M3 can do to one head's attention output, derived from the
// format alone (docs/ARCHITECTURE.md, "FP8 cache"), for tests that compare an FP8 cache with
// float64 over the unquantized inputs.
//
// Per element (scale s = row amax / 448): a value of magnitude >= 2^-6 s is a normal E4M3
// number and rounds to 3 mantissa bits, |x_q - x| <= 2^-4 |x|; below, the subnormal step is
// 2^-9 s, so |x_q - x| <= 2^-10 s. Both cases: |x_q - x| <= 2^-4 |x| + 2^-10 s.
// Logits (c = the softmax scale): |c q.(k_q - k)| <= eps_t = c (2^-4 sum_i |q_i k_i| + 2^-10 s_k ||q||_1).
// Weights: p'_t / p_t = e^{D_t} / sum_u p_u e^{D_u} with |D_t| <= eps_t, so it lies in
// [e^-(eps_t + eps_max), e^(eps_t + eps_max)]; since both sum to 1,
//   o' - o = sum_t (p'_t - p_t)(v_t - o) + sum_t p'_t (v_q,t - v_t),
//   ||o' - o|| <= sum_t p_t [(e^(eps_t + eps_max) - 1) ||v_t - o|| + e^(eps_t + eps_max) (2^-4 ||v_t|| + 2^-10 s_v,t sqrt(d))].
// The bound is rigorous but loose where logits are large (eps grows with |q||k|): tests pair it
// with measured maxima.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sr::testing {

// Relative bound ||o' - o|| / ||o|| for one q-head over `length` unquantized rows (row t of K
// and V at t * row_stride), with q unscaled and c the softmax scale.
inline double fp8_relative_output_bound(const float* q, const float* k, const float* v, int64_t length,
                                        int32_t head_dim, int64_t row_stride, double c) {
  const double kRel = 1.0 / 16, kSub = 1.0 / 1024;
  auto row_scale = [&](const float* row) {
    double amax = 0;
    for (int32_t i = 0; i < head_dim; ++i) amax = std::max(amax, std::fabs(static_cast<double>(row[i])));
    return amax / 448 * (1 + 1e-6);  // the library's f32 scale may round up
  };
  double q_l1 = 0;
  for (int32_t i = 0; i < head_dim; ++i) q_l1 += std::fabs(q[i]);
  std::vector<double> logit(length), eps(length);
  double m = -INFINITY, eps_max = 0;
  for (int64_t t = 0; t < length; ++t) {
    const float* kt = k + t * row_stride;
    double dot = 0, abs_dot = 0;
    for (int32_t i = 0; i < head_dim; ++i) {
      dot += static_cast<double>(q[i]) * kt[i];
      abs_dot += std::fabs(static_cast<double>(q[i]) * kt[i]);
    }
    logit[t] = c * dot;
    eps[t] = c * (kRel * abs_dot + kSub * row_scale(kt) * q_l1);
    m = std::max(m, logit[t]);
    eps_max = std::max(eps_max, eps[t]);
  }
  double l = 0;
  std::vector<double> o(head_dim, 0.0);
  for (int64_t t = 0; t < length; ++t) {
    logit[t] = std::exp(logit[t] - m);
    l += logit[t];
    for (int32_t i = 0; i < head_dim; ++i) o[i] += logit[t] * v[t * row_stride + i];
  }
  double o_norm = 0;
  for (double& x : o) {
    x /= l;
    o_norm += x * x;
  }
  o_norm = std::sqrt(o_norm);
  double bound = 0;
  for (int64_t t = 0; t < length; ++t) {
    const float* vt = v + t * row_stride;
    double spread = 0, v_norm = 0;
    for (int32_t i = 0; i < head_dim; ++i) {
      spread += (vt[i] - o[i]) * (vt[i] - o[i]);
      v_norm += static_cast<double>(vt[i]) * vt[i];
    }
    const double growth = std::exp(eps[t] + eps_max);
    bound += logit[t] / l *
             ((growth - 1) * std::sqrt(spread) + growth * (kRel * std::sqrt(v_norm) + kSub * row_scale(vt) * std::sqrt(head_dim)));
  }
  return o_norm > 0 ? bound / o_norm : INFINITY;
}

}  // namespace sr::testing
