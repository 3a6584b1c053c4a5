// The CPU decode kernel for one work item: one split of one (sequence, kv-head), with the
// q-heads of its GQA group scored together so each K and V byte is read once. The same source
// is compiled once per instruction set (split_kernel.cpp); select_split_kernel picks the best
// the running CPU supports.
#pragma once

#include <cstdint>

#include "core/backend_iface.h"
#include "shared_arithmetic/softmax_state.h"
#include "sinkrouter/sinkrouter.h"

namespace sr::cpu {

// One layer of a cache's storage.
struct LayerView {
  const void* k;        // [num_pages][kv_heads][page_tokens][head_dim]
  const void* v;        // same layout
  const float* vnorm;   // [num_pages][kv_heads]: largest V-row norm in each page
  const float* vspectral;  // [num_pages][kv_heads][kSpectralSlots]: spectral summaries
  const float* k_scale; // FP8 only: [num_pages][kv_heads][page_tokens], one per row
  const float* v_scale;
  int32_t kv_heads;
  int32_t head_dim;
  int32_t page_tokens;
  sr_dtype dtype;
  // Reference compensation (reference_compensation.h); reference nullptr until the layer's is frozen.
  const float* vcentred;   // [num_pages][kv_heads][kCentredSlots]: summaries of the rows minus the reference
  const float* reference;  // [kv_heads][head_dim]
};

// How the step routes: decided by the core (src/core/routing_policy.h).
using RoutingConfig = sr_step_routing;

struct SplitTask {
  const int32_t* pages;  // the sequence's page table
  int64_t length;        // the sequence's tokens at this layer
  int32_t kv_head;
  int64_t begin, end;    // tokens of this split; begin is page aligned
  const float* q;        // [group][head_dim], multiplied by the softmax scale
  int32_t group;
  // Attention variants (docs/ARCHITECTURE.md, "Attention variants").
  VisibleTokens visible;     // what the step attends to; rows before first_row are not read
  int64_t first_row;         // >= begin: the split's first attended token
  const float* sink_logits;  // [group] or nullptr: anchor logits of the routing reference
  float soft_cap;            // 0 = none
  // Outputs.
  SoftmaxPartial* partial;  // [group]
  float* o;                 // [group][head_dim], unnormalised (divide by l after the merge)
  int64_t blocks_total;
  int64_t blocks_skipped;
};

// Longest split (in tokens) a kernel call accepts.
constexpr int64_t kMaxSplitTokens = 4096;
constexpr int32_t kMaxGroup = 64;

using SplitKernel = void (*)(const LayerView& layer, const RoutingConfig& routing, SplitTask& task);

// Each instruction set's build of the kernel (split_kernel.cpp, compiled once per set; the x86
// builds exist where SR_CPU_HAVE_X86_KERNELS is defined). avx512bf16 is the avx512 build with
// the bf16 dot-product instruction scoring bf16 caches (docs/ARCHITECTURE.md, "CPU backend").
namespace generic { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
#if defined(SR_CPU_HAVE_X86_KERNELS)
namespace avx2 { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
namespace avx512 { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
namespace avx512bf16 { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
#endif

struct KernelBuild {
  const char* isa;
  SplitKernel kernel;
};
constexpr int kMaxKernelBuilds = 4;

// The builds this CPU runs, fastest first, generic last; returns how many (at most
// kMaxKernelBuilds are written).
int runnable_split_kernels(KernelBuild* out, int capacity);

// The fastest build this CPU runs but avx512bf16 (taken only when asked for), or the one
// SINKROUTER_CPU_ISA names if the CPU runs it, and the name of its instruction set.
SplitKernel select_split_kernel(const char** isa_name);

}  // namespace sr::cpu
