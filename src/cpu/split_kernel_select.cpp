#include "cpu/split_kernel.h"

#if defined(SR_CPU_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

namespace sr::cpu {
#if defined(SR_CPU_HAVE_X86_KERNELS)
// F16C from CPUID directly: clang 14's __builtin_cpu_supports does not know the name.
static bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

SplitKernel select_split_kernel(const char** isa_name) {
#if defined(SR_CPU_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  const bool f16c = cpu_has_f16c();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && f16c &&
      __builtin_cpu_supports("fma")) {
    *isa_name = "avx512";
    return avx512::run_split;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
    *isa_name = "avx2";
    return avx2::run_split;
  }
#endif
  *isa_name = "generic";
  return generic::run_split;
}

}  // namespace sr::cpu
