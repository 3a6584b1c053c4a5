// See spectral_device.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace sr::testing {

// Runs the GPU backend's spectral summary kernels (backends/gpu/kernels/spectral_kernels.cuh)
// over a layer of f32 pages with one kv-head: `rows` holds physical page p's rows at
// [p][page_tokens][head_dim], `table` maps logical pages to physical ones, and logical pages
// [filled_begin, filled_end) are summarised as an append that fills them would. `slots` returns
// [physical page][kSpectralSlots], NaN where nothing was written; with a `centre` (head_dim
// values) the summaries of the rows minus it, [physical page][kCentredSlots].
cudaError_t run_spectral_summaries(const std::vector<float>& rows, const std::vector<int32_t>& table,
                                   int32_t page_tokens, int32_t head_dim, int64_t filled_begin, int64_t filled_end,
                                   std::vector<float>& slots, const std::vector<float>* centre = nullptr);

// Runs the kernel that freezes a layer's reference over the same kind of layer (its first
// kReferencePages logical pages): `reference` returns head_dim values.
cudaError_t run_reference(const std::vector<float>& rows, const std::vector<int32_t>& table, int32_t page_tokens,
                          int32_t head_dim, std::vector<float>& reference);

}  // namespace sr::testing
