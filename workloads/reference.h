// Float64 attention on the host: the reference every backend is compared with.
#pragma once

#include <cstdint>
#include <vector>

namespace sr::workloads {

// One q-head over `length` tokens: k, v are [length] rows at row_stride floats apart.
// Returns the output row (head_dim doubles).
std::vector<double> reference_attention(const float* q, const float* k, const float* v, int64_t length,
                                        int32_t head_dim, int64_t row_stride, double scale);

// ||a - b|| / ||b|| over n values (a measured, b reference).
double relative_error(const float* a, const double* b, int64_t n);
double relative_error(const double* a, const double* b, int64_t n);

}  // namespace sr::workloads
