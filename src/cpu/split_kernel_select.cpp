#include "cpu/split_kernel.h"

namespace sr::cpu {
namespace generic { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
#if defined(SR_CPU_HAVE_X86_KERNELS)
namespace avx2 { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
namespace avx512 { void run_split(const LayerView&, const RoutingConfig&, SplitTask&); }
#endif

SplitKernel select_split_kernel(const char** isa_name) {
#if defined(SR_CPU_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") &&
      __builtin_cpu_supports("fma")) {
    *isa_name = "avx512";
    return avx512::run_split;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    *isa_name = "avx2";
    return avx2::run_split;
  }
#endif
  *isa_name = "generic";
  return generic::run_split;
}

}  // namespace sr::cpu
