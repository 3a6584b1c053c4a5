// The largest eigenvalue of the Gram matrix of f32 (or wider) rows, computed exactly enough to
// judge a certified upper bound against: long double products and sums, cyclic Jacobi rotations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sr::testing {

// The largest eigenvalue of V^T V for n rows of d values (long double products, exact for f32
// rows, and sums, then Jacobi). For fewer rows than values it works on V V^T (n x n), whose
// nonzero eigenvalues are the same.
template <class Real>
long double exact_lambda_max(const std::vector<Real>& rows, int64_t n, int32_t cols) {
  const bool by_rows = n < cols;
  const int32_t d = by_rows ? static_cast<int32_t>(n) : cols;  // the order of the matrix solved
  std::vector<long double> a(static_cast<size_t>(d) * d, 0.0L);
  if (by_rows) {
    for (int32_t i = 0; i < d; ++i) {
      for (int32_t j = 0; j < d; ++j) {
        for (int32_t k = 0; k < cols; ++k) a[i * d + j] += static_cast<long double>(rows[i * cols + k]) * rows[j * cols + k];
      }
    }
  } else {
    for (int64_t t = 0; t < n; ++t) {
      for (int32_t i = 0; i < d; ++i) {
        for (int32_t j = 0; j < d; ++j) a[i * d + j] += static_cast<long double>(rows[t * d + i]) * rows[t * d + j];
      }
    }
  }
  for (int sweep = 0; sweep < 60; ++sweep) {
    long double off = 0.0L, diag = 0.0L;
    for (int32_t i = 0; i < d; ++i) {
      diag += a[i * d + i] * a[i * d + i];
      for (int32_t j = 0; j < d; ++j) off += i != j ? a[i * d + j] * a[i * d + j] : 0.0L;
    }
    if (off <= diag * 1e-36L) break;
    for (int32_t p = 0; p < d; ++p) {
      for (int32_t q = p + 1; q < d; ++q) {
        const long double apq = a[p * d + q];
        if (apq == 0.0L) continue;
        const long double theta = (a[q * d + q] - a[p * d + p]) / (2.0L * apq);
        const long double t = (theta >= 0 ? 1.0L : -1.0L) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0L));
        const long double c = 1.0L / std::sqrt(t * t + 1.0L), s = t * c;
        for (int32_t k = 0; k < d; ++k) {  // columns p, q
          const long double akp = a[k * d + p], akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (int32_t k = 0; k < d; ++k) {  // rows p, q
          const long double apk = a[p * d + k], aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
      }
    }
  }
  long double best = 0.0L;
  for (int32_t i = 0; i < d; ++i) best = std::max(best, a[i * d + i]);
  return best;
}

}  // namespace sr::testing
