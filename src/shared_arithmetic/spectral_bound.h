// A certified upper bound on the largest eigenvalue of a block of value rows' Gram matrix,
// lambda_max(V^T V) = sigma_max(V)^2: the summary a spectral bound on skipped value rows needs
// (||V^T p|| <= sigma_max(V) ||p||_2). Power iteration only estimates it from below, so the
// estimate is raised by a margin and proven an upper bound by a Cholesky factorisation of
// mu I - G, with the float64 rounding of the Gram matrix and of the factorisation added to the
// result (docs/ARCHITECTURE.md, "Spectral summaries"). Float64 throughout. The certificate's
// arithmetic (the rounding terms, the margins, when power iteration has settled) is shared with
// the GPU's team-of-threads version (backends/gpu/kernels/spectral_kernels.cuh); the loops
// below are the host's.
#pragma once

#include <math.h>
#include <stdint.h>

#include <vector>

#include "shared_arithmetic/host_device.h"

namespace sr {

namespace spectral_detail {

// gamma_k = k u / (1 - k u), u = 2^-53: the relative error bound of a k-term float64 sum or
// dot product (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1).
SR_HD double gamma(int64_t k) {
  const double ku = static_cast<double>(k) * 0x1p-53;
  return ku / (1.0 - ku);
}

// Whether the float64 Cholesky factorisation A = R^T R of the d x d symmetric matrix `a`
// (row-major, upper triangle read, destroyed) runs to completion with positive pivots. Row
// by row (right-looking), so the inner loops run along rows; the rounding bound used below
// holds for any order of the sums.
inline bool cholesky_succeeds(std::vector<double>& a, int32_t d) {
  for (int32_t j = 0; j < d; ++j) {
    double* row_j = a.data() + static_cast<size_t>(j) * d;
    const double pivot = row_j[j];
    if (!(pivot > 0.0)) return false;
    const double r = sqrt(pivot);
    row_j[j] = r;
    for (int32_t k = j + 1; k < d; ++k) row_j[k] /= r;
    for (int32_t i = j + 1; i < d; ++i) {
      double* row_i = a.data() + static_cast<size_t>(i) * d;
      const double f = row_j[i];
      for (int32_t k = i; k < d; ++k) row_i[k] -= f * row_j[k];
    }
  }
  return true;
}

}  // namespace spectral_detail

// The certificate's arithmetic, one source for host and device.
//
// The float64 Gram matrix of n rows of d f32 values, summed over `terms` products per entry: each
// f32 product is exact, so the error is the sums', |E_ij| <= gamma_terms (|V|^T |V|)_ij, whose
// 2-norm is at most gamma_terms ||V||_F^2 (frobenius2 itself carries a relative error of at most
// gamma_{n d}). Holds for any order of the sums.
SR_HD double gram_rounding_error(int64_t terms, int64_t n, int32_t d, double frobenius2) {
  using spectral_detail::gamma;
  return gamma(terms + 1) * frobenius2 * (1.0 + gamma(n * d + 1));
}

// Whatever the iteration finds, trace(G) bounds lambda_max of a positive semi-definite G.
SR_HD double gram_trace_bound(double trace, int32_t m, double gram_error) {
  return trace * (1.0 + spectral_detail::gamma(m + 1)) + m * gram_error;
}

// Power iteration's steps at most (it stops earlier once settled).
constexpr int kPowerIterations = 60;

// Power iteration has converged to working accuracy: the margin absorbs what is left (a slower
// tail only costs another Cholesky attempt, never the certificate).
SR_HD bool power_iteration_settled(int it, double rayleigh, double estimate) {
  return it >= 8 && rayleigh - estimate <= 1e-6 * rayleigh;
}

// The Cholesky attempts: mu = the estimate raised by a margin from kFirstMargin, times
// kMarginGrowth per failed attempt, while the margin is below 1 and mu below the trace bound.
constexpr double kFirstMargin = 1e-3;
constexpr double kMarginGrowth = 4.0;
SR_HD double certificate_shift(double estimate, double margin, double trace) {
  return estimate * (1.0 + margin) + 1e-12 * trace;
}

// The bound once mu I - G factorises. The matrix factored is mu I - G + D (D: the rounding of
// its diagonal, |D_ii| <= u |mu - G_ii|), and then mu I - G + D + dA = R^T R with
// |dA| <= gamma_{m+1} |R^T| |R| (Demmel; m the order), whose 2-norm is at most
// gamma_{m+1} trace(R^T R) <= gamma_{m+1} trace(mu I - G + D) / (1 - gamma_{m+1}). R^T R is
// positive semi-definite, so lambda_max(G) <= mu + ||D|| + ||dA||, plus the Gram matrix's own
// error; the sum is raised by 4 ulps for its own rounding.
SR_HD double certified_from_shift(double mu, double trace, int32_t m, double gram_error, double trace_bound) {
  using spectral_detail::gamma;
  const double diagonal_error = 0x1p-53 * (mu + trace);
  const double factor_error = gamma(m + 1) * (m * mu - trace + m * diagonal_error) * (1.0 + 2.0 * gamma(m + 1));
  const double bound = (mu + diagonal_error + factor_error + gram_error) * (1.0 + 0x1p-51);
  return bound < trace_bound ? bound : trace_bound;
}

// A float64 upper bound stored as an f32 summary: the nearest f32 at or above it.
SR_HD float f32_at_least(double x) {
  float f = static_cast<float>(x);
  if (static_cast<double>(f) < x) f = nextafterf(f, INFINITY);
  return f;
}

// An upper bound on lambda_max(V^T V) for the n rows of `rows` (f32, d values each, `stride`
// floats apart), d <= 1024: never below the exact value of the stored f32 rows, and within
// about 1e-3 of it (relative) where power iteration converges in `iterations` steps, else up
// to trace(V^T V). 0 for no rows (or all-zero rows); +inf where a value is not finite. It works
// on the smaller Gram matrix: V^T V (d x d) or, for fewer rows than dimensions (a page),
// V V^T (n x n), whose nonzero eigenvalues are the same.
inline double certified_gram_lambda_max(const float* rows, int64_t n, int32_t d, int64_t stride,
                                        int iterations = kPowerIterations) {
  if (n <= 0 || d <= 0) return 0.0;
  for (int64_t t = 0; t < n; ++t) {
    for (int32_t i = 0; i < d; ++i) {
      if (!isfinite(rows[t * stride + i])) return INFINITY;
    }
  }
  const bool by_rows = n < d;
  const int32_t m = by_rows ? static_cast<int32_t>(n) : d;  // the Gram matrix's order
  const int64_t terms = by_rows ? d : n;                      // terms of each of its sums
  // The rows in float64, laid out term by term ([terms][m]) so every loop below runs along
  // contiguous memory.
  std::vector<double> by_term(static_cast<size_t>(terms) * m);
  for (int64_t r = 0; r < n; ++r) {
    for (int32_t i = 0; i < d; ++i) {
      const double x = rows[r * stride + i];
      if (by_rows) {
        by_term[static_cast<size_t>(i) * m + r] = x;
      } else {
        by_term[static_cast<size_t>(r) * m + i] = x;
      }
    }
  }
  // The Gram matrix in float64 (lower triangle, then mirrored); gram_rounding_error bounds it.
  std::vector<double> g(static_cast<size_t>(m) * m, 0.0);
  double frobenius2 = 0.0;
  for (double x : by_term) frobenius2 += x * x;
  // Eight terms at a time, so each row of G is loaded once per eight (G need not fit in L1).
  constexpr int kTerms = 8;
  for (int64_t k0 = 0; k0 < terms; k0 += kTerms) {
    const int count = terms - k0 < kTerms ? static_cast<int>(terms - k0) : kTerms;
    const double* tk[kTerms];
    for (int r = 0; r < kTerms; ++r) tk[r] = by_term.data() + static_cast<size_t>(k0 + (r < count ? r : 0)) * m;
    for (int32_t i = 0; i < m; ++i) {
      double a[kTerms];
      for (int r = 0; r < kTerms; ++r) a[r] = r < count ? tk[r][i] : 0.0;
      double* gi = g.data() + static_cast<size_t>(i) * m;
      for (int32_t j = 0; j <= i; ++j) {
        gi[j] += a[0] * tk[0][j] + a[1] * tk[1][j] + a[2] * tk[2][j] + a[3] * tk[3][j] + a[4] * tk[4][j] +
                 a[5] * tk[5][j] + a[6] * tk[6][j] + a[7] * tk[7][j];
      }
    }
  }
  double trace = 0.0;
  for (int32_t i = 0; i < m; ++i) {
    trace += g[static_cast<size_t>(i) * m + i];
    for (int32_t j = 0; j < i; ++j) g[static_cast<size_t>(j) * m + i] = g[static_cast<size_t>(i) * m + j];
  }
  if (frobenius2 == 0.0) return 0.0;
  const double gram_error = gram_rounding_error(terms, n, d, frobenius2);
  const double trace_bound = gram_trace_bound(trace, m, gram_error);

  // Power iteration from the diagonal's square roots (no eigenvector of a Gram matrix of real
  // rows is orthogonal to it unless the rows are): the Rayleigh quotient estimates from below.
  std::vector<double> x(m), y(m);
  for (int32_t i = 0; i < m; ++i) x[i] = sqrt(g[static_cast<size_t>(i) * m + i]) + 1e-300;
  double estimate = 0.0;
  for (int it = 0; it < iterations; ++it) {
    double norm2 = 0.0;
    for (int32_t i = 0; i < m; ++i) norm2 += x[i] * x[i];
    const double inv = 1.0 / sqrt(norm2);
    for (int32_t i = 0; i < m; ++i) x[i] *= inv;
    // y = G x as a sum of G's rows (G is symmetric), so the inner loop runs along a row.
    for (int32_t i = 0; i < m; ++i) y[i] = 0.0;
    for (int32_t j = 0; j < m; ++j) {
      const double xj = x[j];
      const double* gj = g.data() + static_cast<size_t>(j) * m;
      for (int32_t i = 0; i < m; ++i) y[i] += xj * gj[i];
    }
    double rayleigh = 0.0;
    for (int32_t i = 0; i < m; ++i) rayleigh += x[i] * y[i];
    const bool settled = power_iteration_settled(it, rayleigh, estimate);
    estimate = rayleigh > estimate ? rayleigh : estimate;
    x.swap(y);
    if (settled) break;
  }

  // mu grown until mu I - G factorises (certified_from_shift says what the result covers).
  std::vector<double> a(g.size());
  for (double margin = kFirstMargin; margin < 1.0; margin *= kMarginGrowth) {
    const double mu = certificate_shift(estimate, margin, trace);
    if (!(mu < trace_bound)) break;
    for (size_t k = 0; k < a.size(); ++k) a[k] = -g[k];
    for (int32_t i = 0; i < m; ++i) a[static_cast<size_t>(i) * m + i] += mu;
    if (!spectral_detail::cholesky_succeeds(a, m)) continue;
    return certified_from_shift(mu, trace, m, gram_error, trace_bound);
  }
  return trace_bound;
}

}  // namespace sr
