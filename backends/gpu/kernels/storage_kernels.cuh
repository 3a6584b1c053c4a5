// Kernels of the device-resident page pool: writing tokens (with dtype conversion and the
// V-norm summaries), reading them back, trimming a page's summaries, and stream-ordered
// updates of the page tables. Conversions use src/shared_arithmetic/dtype_convert.h, as the CPU does.
#pragma once

#include <math.h>

#include "shared_arithmetic/dtype_convert.h"
#include "compat.h"
#include "element_access.cuh"
#include "gpu_types.h"

namespace sr::gpu {

constexpr int kStorageThreads = 128;
// Pages whose numbers travel in one launch's parameters.
constexpr int kLaunchPages = 512;

struct TokenCopy {
  void* k;               // the layer's pages (cache dtype)
  void* v;
  float* vnorm;          // the layer's summaries [num_pages][kv_heads]
  const void* src_k;     // caller's buffers: element (t, h, d) at t * token_stride + h * head_stride + d
  const void* src_v;
  int32_t src_dtype;
  int32_t cache_dtype;
  int64_t token_stride;
  int64_t head_stride;
  int32_t kv_heads;
  int32_t head_dim;
  int32_t page_tokens;
  int64_t first_token;   // sequence position of the caller's token 0
  int64_t n_tokens;
  int64_t first_logical_page;  // logical page of pages[0]
  int32_t pages[kLaunchPages];
};

// Norm of a stored row, rounded up so a bound built on it stays an upper bound (as the CPU).
__device__ __forceinline__ float rounded_up_norm(double sum_squares) {
  return static_cast<float>(sqrt(sum_squares) * (1.0 + 1e-6));
}

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}

// Block (page i of the launch, kv-head): writes that page's tokens of the call and updates its
// summary: reset when the write starts the page (slot 0), else the larger of old and new.
__global__ void __launch_bounds__(kStorageThreads) write_tokens_kernel(const SR_GRID_CONSTANT TokenCopy c) {
  __shared__ float warp_norm[kStorageThreads / kWarp];
  const int32_t page = c.pages[blockIdx.x];
  const int32_t h = blockIdx.y;
  const int64_t page_first = (c.first_logical_page + blockIdx.x) * c.page_tokens;
  const int64_t t_begin = c.first_token > page_first ? c.first_token : page_first;
  const int64_t t_end_call = c.first_token + c.n_tokens;
  const int64_t t_end = t_end_call < page_first + c.page_tokens ? t_end_call : page_first + c.page_tokens;
  float norm = 0.f;
  for (int64_t t = t_begin + warp_id(); t < t_end; t += kStorageThreads / kWarp) {
    const int64_t src = (t - c.first_token) * c.token_stride + h * c.head_stride;
    const int64_t dst = ((static_cast<int64_t>(page) * c.kv_heads + h) * c.page_tokens + (t - page_first)) * c.head_dim;
    double sum = 0.0;
    for (int d = lane_id(); d < c.head_dim; d += kWarp) {
      float kx = load_any(c.src_k, src + d, c.src_dtype);
      float vx = load_any(c.src_v, src + d, c.src_dtype);
      store_any(c.k, dst + d, c.cache_dtype, kx);
      store_any(c.v, dst + d, c.cache_dtype, vx);
      double stored = load_any(c.v, dst + d, c.cache_dtype);
      sum += stored * stored;
    }
    sum = warp_sum_double(sum);
    norm = fmaxf(norm, rounded_up_norm(sum));
  }
  if (lane_id() == 0) warp_norm[warp_id()] = norm;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kStorageThreads / kWarp; ++w) norm = fmaxf(norm, warp_norm[w]);
    float& summary = c.vnorm[static_cast<int64_t>(page) * c.kv_heads + h];
    summary = t_begin == page_first ? norm : fmaxf(summary, norm);
  }
}

// Element-wise copy of tokens out of the pages into the caller's layout and dtype. Blocks
// cover (page i of the launch, kv-head); src_* name the destination here.
__global__ void __launch_bounds__(kStorageThreads) read_tokens_kernel(const SR_GRID_CONSTANT TokenCopy c, void* k_out, void* v_out) {
  const int32_t page = c.pages[blockIdx.x];
  const int32_t h = blockIdx.y;
  const int64_t page_first = (c.first_logical_page + blockIdx.x) * c.page_tokens;
  const int64_t t_begin = c.first_token > page_first ? c.first_token : page_first;
  const int64_t t_end_call = c.first_token + c.n_tokens;
  const int64_t t_end = t_end_call < page_first + c.page_tokens ? t_end_call : page_first + c.page_tokens;
  const int64_t n = (t_end - t_begin) * c.head_dim;
  for (int64_t i = threadIdx.x; i < n; i += kStorageThreads) {
    const int64_t t = t_begin + i / c.head_dim;
    const int d = static_cast<int>(i % c.head_dim);
    const int64_t src = ((static_cast<int64_t>(page) * c.kv_heads + h) * c.page_tokens + (t - page_first)) * c.head_dim + d;
    const int64_t dst = (t - c.first_token) * c.token_stride + h * c.head_stride + d;
    if (k_out) store_any(k_out, dst, c.src_dtype, load_any(c.k, src, c.cache_dtype));
    if (v_out) store_any(v_out, dst, c.src_dtype, load_any(c.v, src, c.cache_dtype));
  }
}

// Block per kv-head: the summary of one page over its first valid_tokens rows.
__global__ void __launch_bounds__(kStorageThreads) trim_page_kernel(const void* v, float* vnorm, int32_t dtype,
                                                                    int32_t kv_heads, int32_t head_dim,
                                                                    int32_t page_tokens, int32_t page,
                                                                    int32_t valid_tokens) {
  __shared__ float warp_norm[kStorageThreads / kWarp];
  const int32_t h = blockIdx.x;
  float norm = 0.f;
  for (int t = warp_id(); t < valid_tokens; t += kStorageThreads / kWarp) {
    const int64_t row = ((static_cast<int64_t>(page) * kv_heads + h) * page_tokens + t) * head_dim;
    double sum = 0.0;
    for (int d = lane_id(); d < head_dim; d += kWarp) {
      double x = load_any(v, row + d, dtype);
      sum += x * x;
    }
    norm = fmaxf(norm, rounded_up_norm(warp_sum_double(sum)));
  }
  if (lane_id() == 0) warp_norm[warp_id()] = norm;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kStorageThreads / kWarp; ++w) norm = fmaxf(norm, warp_norm[w]);
    vnorm[static_cast<int64_t>(page) * kv_heads + h] = norm;
  }
}

__global__ void scatter_words_kernel(const SR_GRID_CONSTANT WordScatter s) {
  for (int i = threadIdx.x; i < s.count; i += blockDim.x) s.dst[i] = s.words[i];
}

}  // namespace sr::gpu
