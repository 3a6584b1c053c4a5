// The GPU backend's spectral summary kernels run on rows the test chooses, so every slot can be
// judged against an exact eigensolve on the host (test_gpu_decode.cpp).
#include "spectral_device.h"

#include "kernels/spectral_kernels.cuh"

namespace sr::testing {

cudaError_t run_spectral_summaries(const std::vector<float>& rows, const std::vector<int32_t>& table,
                                   int32_t page_tokens, int32_t head_dim, int64_t filled_begin, int64_t filled_end,
                                   std::vector<float>& slots, const std::vector<float>* centre) {
  const int64_t physical_pages = static_cast<int64_t>(rows.size()) / (static_cast<int64_t>(page_tokens) * head_dim);
  const int32_t per_page = centre ? kCentredSlots : kSpectralSlots;
  float* v = nullptr;
  float* spectral = nullptr;
  float* reference = nullptr;
  int32_t* pages = nullptr;
  const int64_t slot_count = physical_pages * per_page;
  cudaError_t e = cudaMalloc(&v, sizeof(float) * rows.size());
  if (e == cudaSuccess) e = cudaMalloc(&spectral, sizeof(float) * slot_count);
  if (e == cudaSuccess) e = cudaMalloc(&pages, sizeof(int32_t) * table.size());
  if (e == cudaSuccess && centre) e = cudaMalloc(&reference, sizeof(float) * centre->size());
  if (e == cudaSuccess) e = cudaMemcpy(v, rows.data(), sizeof(float) * rows.size(), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(pages, table.data(), sizeof(int32_t) * table.size(), cudaMemcpyHostToDevice);
  if (e == cudaSuccess && centre) {
    e = cudaMemcpy(reference, centre->data(), sizeof(float) * centre->size(), cudaMemcpyHostToDevice);
  }
  if (e == cudaSuccess) {
    sr::gpu::fill_floats_kernel<<<64, 256>>>(spectral, slot_count, NAN);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) {
    sr::gpu::SpectralJob job{};
    job.v = v;
    job.v_scale = nullptr;
    job.slots = spectral;
    job.slot_count = per_page;
    job.centre = reference;
    job.pages = pages;
    job.dtype = SR_DTYPE_F32;
    job.kv_heads = 1;
    job.head_dim = head_dim;
    job.page_tokens = page_tokens;
    job.table_first = 0;
    e = sr::gpu::launch_spectral_summaries(job, filled_begin, filled_end, nullptr);
  }
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  slots.assign(static_cast<size_t>(slot_count), 0.f);
  if (e == cudaSuccess) e = cudaMemcpy(slots.data(), spectral, sizeof(float) * slot_count, cudaMemcpyDeviceToHost);
  cudaFree(v);
  cudaFree(spectral);
  cudaFree(reference);
  cudaFree(pages);
  return e;
}

cudaError_t run_reference(const std::vector<float>& rows, const std::vector<int32_t>& table, int32_t page_tokens,
                          int32_t head_dim, std::vector<float>& reference) {
  float* v = nullptr;
  float* out = nullptr;
  int32_t* pages = nullptr;
  cudaError_t e = cudaMalloc(&v, sizeof(float) * rows.size());
  if (e == cudaSuccess) e = cudaMalloc(&out, sizeof(float) * head_dim);
  if (e == cudaSuccess) e = cudaMalloc(&pages, sizeof(int32_t) * table.size());
  if (e == cudaSuccess) e = cudaMemcpy(v, rows.data(), sizeof(float) * rows.size(), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(pages, table.data(), sizeof(int32_t) * table.size(), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) {
    sr::gpu::SpectralJob job{};
    job.v = v;
    job.pages = pages;
    job.dtype = SR_DTYPE_F32;
    job.kv_heads = 1;
    job.head_dim = head_dim;
    job.page_tokens = page_tokens;
    job.table_first = 0;
    sr::gpu::reference_kernel<<<1, sr::gpu::kSpectralThreads>>>(job, out);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  reference.assign(static_cast<size_t>(head_dim), 0.f);
  if (e == cudaSuccess) e = cudaMemcpy(reference.data(), out, sizeof(float) * head_dim, cudaMemcpyDeviceToHost);
  cudaFree(v);
  cudaFree(out);
  cudaFree(pages);
  return e;
}

}  // namespace sr::testing
