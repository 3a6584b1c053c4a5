// The spectral summaries computed on the device where an append fills a page or closes a node
// (docs/ARCHITECTURE.md, "Spectral summaries"): the GPU's version of certified_gram_lambda_max
// (src/shared_arithmetic/spectral_bound.h), run by a block of threads on one (page or node,
// kv-head) over the stored rows as decode reads them (FP8 dequantized). The certificate's
// arithmetic (rounding terms, margins, when power iteration has settled) is the shared
// header's; only the loops are the team's: the float64 Gram matrix from tiles of rows staged in
// shared memory, power iteration a warp per row, the Cholesky factorisation of mu I - G row by
// row with a barrier between steps. Any order of the float64 sums keeps the same rounding bounds.
// The same kernel summarises the rows minus the layer's reference (reference_compensation.h),
// and a second one freezes that reference.
#pragma once

#include <math.h>

#include "shared_arithmetic/reference_compensation.h"
#include "shared_arithmetic/spectral_bound.h"
#include "shared_arithmetic/tree_min_bound.h"
#include "storage_kernels.cuh"

namespace sr::gpu {

constexpr int kSpectralThreads = 256;
constexpr int kSpectralTermTile = 16;   // terms of the Gram sums staged in shared memory at once
constexpr int kSpectralMaxOrder = 256;  // the Gram matrix's order is at most head_dim <= 256

// One launch: the summaries of one level (0: page sigma, l: lambda of level-l nodes) for every
// page the write filled or node it closed, over every kv-head: of the rows, or with `centre`
// of the rows minus it (then level 0 also writes the page's largest centred norm).
struct SpectralJob {
  const void* v;          // the layer's V pages
  const float* v_scale;   // FP8: the layer's V row scales; else null
  float* slots;           // the layer's [num_pages][kv_heads][slot_count]
  const float* centre;    // null, or the layer's reference [kv_heads][head_dim]
  int32_t slot_count;     // kSpectralSlots, or kCentredSlots with a centre
  const int32_t* pages;   // device copy of the sequence's page table from logical page table_first
  double* workspace;      // [gridDim.x][2 order^2]: G and the matrix factored
  int32_t dtype, kv_heads, head_dim, page_tokens;
  int32_t level;
  int64_t table_first;    // logical page of pages[0]
  int64_t first_item;     // the level's first page (level 0) or node closed by the write
  int64_t items;
};

// Rows of a level-`level` item, and the order of the Gram matrix it works on (the smaller one:
// V^T V, or V V^T for fewer rows than dimensions).
__host__ __device__ inline int64_t spectral_rows(int32_t page_tokens, int32_t level) {
  return static_cast<int64_t>(page_tokens) << (2 * level);
}
__host__ __device__ inline int32_t spectral_order(int32_t page_tokens, int32_t head_dim, int32_t level) {
  const int64_t n = spectral_rows(page_tokens, level);
  return n < head_dim ? static_cast<int32_t>(n) : head_dim;
}

// The sum over the block of every thread's v (every thread gets it).
__device__ inline double block_sum_double(double v, double* scratch) {
  v = warp_sum_double(v);
  __syncthreads();  // (scratch may still be read from the previous sum)
  if (lane_id() == 0) scratch[warp_id()] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < kSpectralThreads / kWarp; ++w) total += scratch[w];
  return total;
}

// Whether the Cholesky factorisation of the m x m symmetric matrix `a` (upper triangle read,
// destroyed) runs to completion with positive pivots: spectral_detail::cholesky_succeeds by a
// block, one row step at a time.
__device__ inline bool team_cholesky_succeeds(double* a, int32_t m) {
  for (int32_t j = 0; j < m; ++j) {
    double* row_j = a + static_cast<int64_t>(j) * m;
    const double pivot = row_j[j];
    if (!(pivot > 0.0)) return false;  // (every thread reads the same pivot)
    const double r = sqrt(pivot);
    __syncthreads();  // every thread has read the pivot before it changes
    for (int32_t k = j + 1 + threadIdx.x; k < m; k += kSpectralThreads) row_j[k] /= r;
    if (threadIdx.x == 0) row_j[j] = r;
    __syncthreads();
    const int32_t rest = m - j - 1;
    for (int32_t e = threadIdx.x; e < rest * rest; e += kSpectralThreads) {
      const int32_t i = j + 1 + e / rest, k = j + 1 + e % rest;
      if (k >= i) a[static_cast<int64_t>(i) * m + k] -= row_j[i] * row_j[k];
    }
    __syncthreads();
  }
  return true;
}

// Grid-stride over (item, kv-head); each block writes one slot per work item.
__global__ void __launch_bounds__(kSpectralThreads) spectral_summary_kernel(const SR_GRID_CONSTANT SpectralJob job) {
  __shared__ double tile[kSpectralTermTile][kSpectralMaxOrder];
  __shared__ double x[kSpectralMaxOrder], y[kSpectralMaxOrder];
  __shared__ double scratch[kSpectralThreads / kWarp];
  const int32_t d = job.head_dim, PT = job.page_tokens;
  const int64_t n = spectral_rows(PT, job.level);
  const bool by_rows = n < d;
  const int32_t m = spectral_order(PT, d, job.level);
  const int64_t terms = by_rows ? d : n;
  double* g = job.workspace + static_cast<int64_t>(blockIdx.x) * 2 * m * m;
  double* a = g + static_cast<int64_t>(m) * m;
  for (int64_t work = blockIdx.x; work < job.items * job.kv_heads; work += gridDim.x) {
    const int64_t item = job.first_item + work / job.kv_heads;
    const int32_t h = static_cast<int32_t>(work % job.kv_heads);
    const int64_t first_page = item << (2 * job.level);  // the item's first logical page
    // Element (term k, index i) of the item's rows: row i, column k for V V^T; else row k.
    auto value = [&](int64_t k, int32_t i) {
      const int64_t row = by_rows ? i : k;
      const int32_t col = by_rows ? static_cast<int32_t>(k) : i;
      const int32_t page = job.pages[first_page + row / PT - job.table_first];
      const int64_t offset = ((static_cast<int64_t>(page) * job.kv_heads + h) * PT + row % PT) * d + col;
      const float stored = load_stored(job.v, job.v_scale, offset, d, job.dtype);
      // (Centred in f32, as the host does: kCentringSlack covers the rounding.)
      return static_cast<double>(job.centre ? stored - job.centre[static_cast<int64_t>(h) * d + col] : stored);
    };

    // The Gram matrix's lower triangle, a tile of terms at a time.
    for (int64_t e = threadIdx.x; e < static_cast<int64_t>(m) * m; e += kSpectralThreads) g[e] = 0.0;
    double frobenius2 = 0.0;
    bool finite = true;
    for (int64_t k0 = 0; k0 < terms; k0 += kSpectralTermTile) {
      const int count = terms - k0 < kSpectralTermTile ? static_cast<int>(terms - k0) : kSpectralTermTile;
      __syncthreads();  // the previous tile has been used
      for (int32_t e = threadIdx.x; e < count * m; e += kSpectralThreads) {
        const double v = value(k0 + e / m, e % m);
        finite = finite && isfinite(v);
        frobenius2 += v * v;
        tile[e / m][e % m] = v;
      }
      __syncthreads();
      for (int32_t e = threadIdx.x; e < m * m; e += kSpectralThreads) {
        const int32_t i = e / m, j = e % m;
        if (j > i) continue;
        double sum = 0.0;
        for (int r = 0; r < count; ++r) sum += tile[r][i] * tile[r][j];
        g[e] += sum;
      }
    }
    const bool all_finite = __syncthreads_and(finite);
    frobenius2 = block_sum_double(frobenius2, scratch);
    double lambda = INFINITY;
    if (all_finite && frobenius2 == 0.0) lambda = 0.0;
    if (all_finite && frobenius2 > 0.0) {
      for (int32_t e = threadIdx.x; e < m * m; e += kSpectralThreads) {
        const int32_t i = e / m, j = e % m;
        if (j > i) g[e] = g[static_cast<int64_t>(j) * m + i];
      }
      __syncthreads();
      double diagonal = 0.0;
      for (int32_t i = threadIdx.x; i < m; i += kSpectralThreads) {
        diagonal += g[static_cast<int64_t>(i) * m + i];
        x[i] = sqrt(g[static_cast<int64_t>(i) * m + i]) + 1e-300;
      }
      const double trace = block_sum_double(diagonal, scratch);
      const double gram_error = gram_rounding_error(terms, n, d, frobenius2);
      const double trace_bound = gram_trace_bound(trace, m, gram_error);
      lambda = trace_bound;

      // Power iteration (spectral_bound.h): normalise x, y = G x (a warp per row), Rayleigh
      // quotient, until settled.
      double estimate = 0.0;
      for (int it = 0; it < kPowerIterations; ++it) {
        double part = 0.0;
        for (int32_t i = threadIdx.x; i < m; i += kSpectralThreads) part += x[i] * x[i];
        const double inv = 1.0 / sqrt(block_sum_double(part, scratch));
        for (int32_t i = threadIdx.x; i < m; i += kSpectralThreads) x[i] *= inv;
        __syncthreads();
        for (int32_t i = warp_id(); i < m; i += kSpectralThreads / kWarp) {
          const double* gi = g + static_cast<int64_t>(i) * m;
          double sum = 0.0;
          for (int32_t j = lane_id(); j < m; j += kWarp) sum += gi[j] * x[j];
          sum = warp_sum_double(sum);
          if (lane_id() == 0) y[i] = sum;
        }
        __syncthreads();
        part = 0.0;
        for (int32_t i = threadIdx.x; i < m; i += kSpectralThreads) part += x[i] * y[i];
        const double rayleigh = block_sum_double(part, scratch);
        const bool settled = power_iteration_settled(it, rayleigh, estimate);
        estimate = rayleigh > estimate ? rayleigh : estimate;
        for (int32_t i = threadIdx.x; i < m; i += kSpectralThreads) x[i] = y[i];
        __syncthreads();
        if (settled) break;
      }

      // mu grown until mu I - G factorises (certified_from_shift says what the result covers).
      for (double margin = kFirstMargin; margin < 1.0; margin *= kMarginGrowth) {
        const double mu = certificate_shift(estimate, margin, trace);
        if (!(mu < trace_bound)) break;
        for (int32_t e = threadIdx.x; e < m * m; e += kSpectralThreads) {
          const int32_t i = e / m, j = e % m;
          a[e] = (i == j ? mu : 0.0) - g[e];
        }
        __syncthreads();
        if (team_cholesky_succeeds(a, m)) {
          lambda = certified_from_shift(mu, trace, m, gram_error, trace_bound);
          break;
        }
        __syncthreads();
      }
    }
    // A centred page's largest centred row norm, from the exact differences (a warp per row).
    float largest = 0.f;
    if (job.centre && job.level == 0) {
      const float* c = job.centre + static_cast<int64_t>(h) * d;
      const int32_t page = job.pages[first_page - job.table_first];
      float warp_largest = 0.f;
      for (int64_t row = warp_id(); row < n; row += kSpectralThreads / kWarp) {
        const int64_t offset = ((static_cast<int64_t>(page) * job.kv_heads + h) * PT + row) * d;
        double sum = 0.0;
        for (int32_t col = lane_id(); col < d; col += kWarp) {
          const double x = static_cast<double>(load_stored(job.v, job.v_scale, offset + col, d, job.dtype)) - c[col];
          sum += x * x;
        }
        warp_largest = fmaxf(warp_largest, summary_row_norm(warp_sum_double(sum)));
      }
      __syncthreads();  // (scratch may still be read from the last block sum)
      if (lane_id() == 0) scratch[warp_id()] = warp_largest;
      __syncthreads();
      for (int w = 0; w < kSpectralThreads / kWarp; ++w) largest = fmaxf(largest, static_cast<float>(scratch[w]));
    }
    if (threadIdx.x == 0) {
      // The slot lives on the item's last page: a page's own, or the page that closes the node.
      const int64_t last = first_page + (int64_t{1} << (2 * job.level)) - 1;
      const int32_t page = job.pages[last - job.table_first];
      float* slots = job.slots + (static_cast<int64_t>(page) * job.kv_heads + h) * job.slot_count;
      const double slack = job.centre ? kCentringSlack : 1.0;
      slots[job.level] = job.level == 0 ? f32_at_least(sqrt(lambda) * slack) : f32_at_least(lambda * slack * slack);
      if (job.centre && job.level == 0) slots[kCentredNormSlot] = largest;
    }
    __syncthreads();  // the workspace and shared buffers are reused by the next item
  }
}

// The layer's reference (reference_compensation.h): per kv-head (a block) the mean of the
// finite stored V rows of logical pages [0, kReferencePages), summed row by row in float64 as
// the host's freeze_reference does (a thread per dimension). job.pages from logical page 0.
__global__ void __launch_bounds__(kSpectralThreads) reference_kernel(const SR_GRID_CONSTANT SpectralJob job, float* reference) {
  const int32_t h = blockIdx.x, d = job.head_dim, PT = job.page_tokens;
  const bool mine = static_cast<int32_t>(threadIdx.x) < d;
  double sum = 0.0;
  int64_t finite_rows = 0;
  for (int64_t row = 0; row < kReferencePages * PT; ++row) {
    const int32_t page = job.pages[row / PT - job.table_first];
    const int64_t offset = ((static_cast<int64_t>(page) * job.kv_heads + h) * PT + row % PT) * d;
    const float x = mine ? load_stored(job.v, job.v_scale, offset + threadIdx.x, d, job.dtype) : 0.f;
    if (__syncthreads_and(isfinite(x))) {
      sum += x;
      ++finite_rows;
    }
  }
  if (mine) reference[static_cast<int64_t>(h) * d + threadIdx.x] = finite_rows ? static_cast<float>(sum / finite_rows) : 0.f;
}

// Bytes of float64 workspace one summary launch may take (it runs fewer blocks for larger orders).
constexpr int64_t kSpectralWorkspaceBytes = int64_t{32} << 20;

// The summaries of logical pages [filled_begin, filled_end), now full, and of every node they
// close: one launch per level on `stream`, the workspace from the stream's memory pool. job
// carries the layer and the device page table from job.table_first (at most filled_begin
// rounded down to a top-level node). Where the pool is short of memory the remaining summaries
// stay "none known" (+inf). Returns a launch's error, if any.
inline gpuError_t launch_spectral_summaries(SpectralJob job, int64_t filled_begin, int64_t filled_end, gpuStream_t stream) {
  for (int32_t level = 0; level <= kTreeLevels; ++level) {
    // Items whose last page lies in [filled_begin, filled_end).
    const int64_t span = int64_t{1} << (2 * level);
    job.level = level;
    job.first_item = filled_begin / span;
    job.items = filled_end / span - job.first_item;
    if (job.items <= 0) break;  // (no node of a level closes where none of the level below does)
    const int64_t order = spectral_order(job.page_tokens, job.head_dim, level);
    const int64_t block_bytes = 2 * order * order * static_cast<int64_t>(sizeof(double));
    int64_t blocks = job.items * job.kv_heads;
    if (blocks > kSpectralWorkspaceBytes / block_bytes) blocks = kSpectralWorkspaceBytes / block_bytes;
    if (blocks < 1) blocks = 1;
    if (blocks > 65535) blocks = 65535;
    if (gpuMallocAsync(reinterpret_cast<void**>(&job.workspace), static_cast<size_t>(blocks * block_bytes), stream) != gpuSuccess) {
      (void)gpuGetLastError();
      break;
    }
    spectral_summary_kernel<<<static_cast<unsigned>(blocks), kSpectralThreads, 0, stream>>>(job);
    const gpuError_t launched = gpuGetLastError();
    (void)gpuFreeAsync(job.workspace, stream);
    if (launched != gpuSuccess) return launched;
  }
  return gpuSuccess;
}

// Every float of [data, data + count) set to value (the summaries start as "none known").
__global__ void fill_floats_kernel(float* data, int64_t count, float value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    data[i] = value;
  }
}

}  // namespace sr::gpu
