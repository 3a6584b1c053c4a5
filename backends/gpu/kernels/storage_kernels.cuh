// Kernels of the device-resident page pool: writing tokens (with dtype conversion and the
// V-norm summaries), reading them back, trimming a page's summaries, and stream-ordered
// updates of the page tables. Conversions use src/shared_arithmetic/dtype_convert.h and FP8 rows
// src/shared_arithmetic/fp8_rows.h, as the CPU does, so both store the same bits.
#pragma once

#include <math.h>

#include "shared_arithmetic/dtype_convert.h"
#include "shared_arithmetic/fp8_rows.h"
#include "shared_arithmetic/softmax_state.h"
#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/tree_min_bound.h"
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
  float* k_scale;        // FP8: the layer's row scales [num_pages][kv_heads][page_tokens]; else null
  float* v_scale;
  float* vnorm;          // the layer's summaries [num_pages][kv_heads]
  float* vspectral;      // the layer's spectral summaries [num_pages][kv_heads][kSpectralSlots]
  float* vcentred;       // the layer's centred summaries [num_pages][kv_heads][kCentredSlots]
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

// Elements of a row per lane of a warp (head_dim <= 256, checked at cache creation).
constexpr int kRowPerLane = 256 / kWarp;

// Element i of a layer's pages as decode reads it: FP8 codes times their row's scale.
__device__ __forceinline__ float load_stored(const void* base, const float* scales, int64_t i, int32_t head_dim,
                                             int32_t dtype) {
  if (dtype == SR_DTYPE_FP8_E4M3) return fp8_decode(static_cast<const uint8_t*>(base)[i], scales[i / head_dim]);
  return load_any(base, i, dtype);
}

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += shfl_xor(v, o);
  return v;
}

// Block (page i of the launch, kv-head): writes that page's tokens of the call and updates its
// summary: reset when the write starts the page (slot 0), else the larger of old and new. The
// page's spectral summaries become "none known" (+inf); spectral_kernels.cuh fills them once
// the page is full.
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
    if (c.cache_dtype == SR_DTYPE_FP8_E4M3) {
      // The row's largest magnitude over the warp (fp8_amax_step is a max that keeps NaN, so
      // any order gives the CPU's value), its scale, then the codes.
      float kx[kRowPerLane], vx[kRowPerLane];
      float k_amax = 0.f, v_amax = 0.f;
#pragma unroll
      for (int i = 0; i < kRowPerLane; ++i) {
        const int d = lane_id() + i * kWarp;
        kx[i] = d < c.head_dim ? load_any(c.src_k, src + d, c.src_dtype) : 0.f;
        vx[i] = d < c.head_dim ? load_any(c.src_v, src + d, c.src_dtype) : 0.f;
        k_amax = fp8_amax_step(k_amax, kx[i]);
        v_amax = fp8_amax_step(v_amax, vx[i]);
      }
#pragma unroll
      for (int o = kWarp / 2; o > 0; o >>= 1) {
        k_amax = fp8_amax_step(k_amax, shfl_xor(k_amax, o));
        v_amax = fp8_amax_step(v_amax, shfl_xor(v_amax, o));
      }
      const float k_scale = fp8_row_scale(k_amax), v_scale = fp8_row_scale(v_amax);
      const int64_t row = dst / c.head_dim;
      if (lane_id() == 0) {
        c.k_scale[row] = k_scale;
        c.v_scale[row] = v_scale;
      }
#pragma unroll
      for (int i = 0; i < kRowPerLane; ++i) {
        const int d = lane_id() + i * kWarp;
        if (d < c.head_dim) {
          static_cast<uint8_t*>(c.k)[dst + d] = fp8_encode(kx[i], k_scale);
          const uint8_t code = fp8_encode(vx[i], v_scale);
          static_cast<uint8_t*>(c.v)[dst + d] = code;
          const double stored = fp8_decode(code, v_scale);
          sum += stored * stored;
        }
      }
    } else {
      for (int d = lane_id(); d < c.head_dim; d += kWarp) {
        float kx = load_any(c.src_k, src + d, c.src_dtype);
        float vx = load_any(c.src_v, src + d, c.src_dtype);
        store_any(c.k, dst + d, c.cache_dtype, kx);
        store_any(c.v, dst + d, c.cache_dtype, vx);
        double stored = load_any(c.v, dst + d, c.cache_dtype);
        sum += stored * stored;
      }
    }
    sum = warp_sum_double(sum);
    norm = fmaxf(norm, summary_row_norm(sum));
  }
  if (lane_id() == 0) warp_norm[warp_id()] = norm;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kStorageThreads / kWarp; ++w) norm = fmaxf(norm, warp_norm[w]);
    float& summary = c.vnorm[static_cast<int64_t>(page) * c.kv_heads + h];
    summary = t_begin == page_first ? norm : fmaxf(summary, norm);
  }
  if (c.vspectral && threadIdx.x < kSpectralSlots) {
    c.vspectral[(static_cast<int64_t>(page) * c.kv_heads + h) * kSpectralSlots + threadIdx.x] = INFINITY;
  }
  if (c.vcentred && threadIdx.x < kCentredSlots) {
    c.vcentred[(static_cast<int64_t>(page) * c.kv_heads + h) * kCentredSlots + threadIdx.x] = INFINITY;
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
    if (k_out) store_any(k_out, dst, c.src_dtype, load_stored(c.k, c.k_scale, src, c.head_dim, c.cache_dtype));
    if (v_out) store_any(v_out, dst, c.src_dtype, load_stored(c.v, c.v_scale, src, c.head_dim, c.cache_dtype));
  }
}

// Block per kv-head: the summary of one page over its first valid_tokens rows (as decode reads
// them: FP8 dequantized).
__global__ void __launch_bounds__(kStorageThreads) trim_page_kernel(const void* v, const float* v_scale, float* vnorm, int32_t dtype,
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
      double x = load_stored(v, v_scale, row + d, head_dim, dtype);
      sum += x * x;
    }
    norm = fmaxf(norm, summary_row_norm(warp_sum_double(sum)));
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
