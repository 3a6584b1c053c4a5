// sr_merge_attention_states with arbitrary states: on success the merged output, lse and bound
// are checked against float64 (sum_i exp(lse_i - lse) out_i, and the merged bound of
// docs/ARCHITECTURE.md 4.7); on failure nothing may be written.
#include <cmath>
#include <vector>

#include "c_callers.h"
#include "dtype_rounding.h"
#include "harness.h"

namespace sr_fuzz {

void Harness::merge_states() {
  ContextSlot& context = *pick_context();
  Expectation e;
  if (!context.handle) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  sr_merge_args m;
  sr_merge_args_default(&m, sizeof m);
  uint8_t b = in_.u8();
  m.num_states = b < 0xF0 ? b % 4 + 1 : (b % 2 ? 0 : 65);
  if (m.num_states < 1 || m.num_states > 64) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  m.rows = b < 0xF8 ? b % 3 + 1 : 0;
  m.head_dim = b % 5 == 4 && b >= 0xF0 ? 0 : b % 8 + 1;
  if (m.rows < 1 || m.head_dim < 1) e.must_fail({SR_ERR_OUT_OF_RANGE, SR_ERR_INVALID_ARGUMENT});
  b = in_.u8();
  const sr_dtype dtypes[4] = {SR_DTYPE_F32, SR_DTYPE_F32, SR_DTYPE_F16, SR_DTYPE_BF16};
  m.state_dtype = dtypes[b % 4];
  m.out_dtype = dtypes[b / 4 % 4];
  if (b >= 0xF8) {
    store_raw(m.out_dtype, b & 1 ? SR_DTYPE_FP8_E4M3 : 7);
    e.must_fail({SR_ERR_UNSUPPORTED, SR_ERR_INVALID_ARGUMENT});
  }
  const bool with_bounds = b & 0x10, want_lse = b & 0x20, want_bound = b & 0x40;
  const int states = m.num_states >= 1 && m.num_states <= 64 ? m.num_states : 1;
  const int64_t rows = m.rows >= 1 ? m.rows : 1;
  const int32_t D = m.head_dim >= 1 ? m.head_dim : 1;
  const sr_dtype out_dtype = b >= 0xF8 ? SR_DTYPE_F32 : m.out_dtype;

  // States: values, lse in [-30, 30] or -inf (an empty state), relative bounds in [0, 0.5] or +inf.
  ValueSource values(in_.u8() + 313 * calls_, in_.u8());
  std::vector<std::vector<unsigned char>> outs(states);
  std::vector<std::vector<float>> lses(states), bounds(states);
  std::vector<const void*> out_ptrs(states);
  std::vector<const float*> lse_ptrs(states), bound_ptrs(states);
  for (int i = 0; i < states; ++i) {
    outs[i].resize(static_cast<size_t>(rows) * D * element_size(m.state_dtype));
    for (int64_t j = 0; j < rows * D; ++j) store_element(outs[i].data(), j, m.state_dtype, values.next());
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t c = in_.u8();
      lses[i].push_back(c == 0xFF ? -INFINITY : (static_cast<float>(c) - 127.f) * 0.25f);
      bounds[i].push_back(c % 16 == 15 ? INFINITY : static_cast<float>(c % 16) / 32.f);
    }
    out_ptrs[i] = outs[i].data();
    lse_ptrs[i] = lses[i].data();
    bound_ptrs[i] = lses[i][0] == 0.25f ? nullptr : bounds[i].data();  // now and then, an exact state
  }
  const uint8_t nulls = in_.u8();
  const int null_arg = nulls % 8;  // 1: state_outs, 2: state_lses, 3: out, 4: one state's out
  if (null_arg >= 1 && null_arg <= 4) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  if (null_arg == 4) out_ptrs[nulls / 8 % states] = nullptr;
  std::vector<unsigned char> out(static_cast<size_t>(rows) * D * element_size(out_dtype), 0xFF);
  std::vector<float> lse(rows, NAN), bound(rows, NAN);
  m.state_outs = null_arg == 1 ? nullptr : out_ptrs.data();
  m.state_lses = null_arg == 2 ? nullptr : lse_ptrs.data();
  m.state_bounds = with_bounds ? bound_ptrs.data() : nullptr;
  m.out = null_arg == 3 ? nullptr : out.data();
  m.lse = want_lse ? lse.data() : nullptr;
  m.bound = want_bound ? bound.data() : nullptr;
  m.struct_size = pick_struct_size(sizeof m, e);

  const bool null_args = in_.u8() == 0xFF;
  if (null_args) e.must_fail({SR_ERR_INVALID_ARGUMENT});
  const sr_status st = sr_merge_attention_states(context.handle, null_args ? nullptr : &m);
  if (!e.check(st, "sr_merge_attention_states")) {
    for (unsigned char byte : out) FUZZ_CHECK(byte == 0xFF, "a failed sr_merge_attention_states wrote its output");
    for (int64_t r = 0; r < rows; ++r) {
      FUZZ_CHECK(std::isnan(lse[r]) && std::isnan(bound[r]), "a failed sr_merge_attention_states wrote lse or bound");
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    double top = -INFINITY;
    for (int i = 0; i < states; ++i) top = std::fmax(top, lses[i][r]);
    double sum = 0, abs_bound = 0;
    std::vector<double> expect(D, 0.0), magnitude(D, 0.0);  // sum_i w_i x_i and sum_i w_i |x_i|
    for (int i = 0; i < states; ++i) {
      if (lses[i][r] == -INFINITY) continue;
      const double w = std::exp(lses[i][r] - top);
      sum += w;
      double norm2 = 0;
      for (int32_t d = 0; d < D; ++d) {
        const double x = load_element(outs[i].data(), r * D + d, m.state_dtype);
        expect[d] += w * x;
        magnitude[d] += w * std::fabs(x);
        norm2 += x * x;
      }
      if (with_bounds && bound_ptrs[i]) {
        const double eps = bounds[i][r];
        abs_bound += std::isinf(eps) ? INFINITY : w * eps * std::sqrt(norm2) / (1 + eps);
      }
    }
    double err2 = 0, scale2 = 0, magnitude2 = 0;
    for (int32_t d = 0; d < D; ++d) {
      const double want = sum > 0 ? expect[d] / sum : 0.0;
      const double got = load_element(out.data(), r * D + d, out_dtype);
      err2 += (got - want) * (got - want);
      scale2 += want * want;
      magnitude2 += sum > 0 ? magnitude[d] * magnitude[d] / (sum * sum) : 0.0;
    }
    // f32 sums of a few states (relative to the magnitudes summed: states may cancel), then the
    // output's rounding.
    FUZZ_CHECK(std::sqrt(err2) <= 1e-5 * std::sqrt(magnitude2) +
                                      (out_dtype == SR_DTYPE_F32 ? 0 : 1.0 / 128) * std::sqrt(scale2) + 1e-30 +
                                      (out_dtype == SR_DTYPE_F16 ? 6e-8 * std::sqrt(static_cast<double>(D)) : 0.0),
               "merged row %lld off by %.3g (norm %.3g)", static_cast<long long>(r), std::sqrt(err2),
               std::sqrt(scale2));
    if (want_lse) {
      const double want = sum > 0 ? top + std::log(sum) : -INFINITY;
      FUZZ_CHECK(want == -INFINITY ? lse[r] == -INFINITY : std::fabs(lse[r] - want) <= 1e-5 * (1 + std::fabs(want)),
                 "merged lse %.9g of row %lld, float64 %.9g", lse[r], static_cast<long long>(r), want);
    }
    if (want_bound) {
      FUZZ_CHECK(bound[r] >= 0.f, "merged bound %g is negative", bound[r]);
      if (!with_bounds) FUZZ_CHECK(bound[r] == 0.f, "merged bound %g of exact states", bound[r]);
      const double a = sum > 0 ? abs_bound / sum : 0.0, n = std::sqrt(scale2);  // the f32 output before rounding
      const double want = a <= 0 ? 0.0 : (n - a > 0 ? a / (n - a) : INFINITY);
      // The library works in f32: allow its rounding, never a smaller bound than f32 can reach.
      FUZZ_CHECK(std::isinf(want) ? (bound[r] > 1e30f || n - a < 1e-3 * n)
                                  : std::fabs(bound[r] - want) <= 1e-3 * want + 1e-6,
                 "merged bound %.6g of row %lld, float64 %.6g", bound[r], static_cast<long long>(r), want);
    }
  }
}

}  // namespace sr_fuzz
