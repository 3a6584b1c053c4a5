#include "cpu/split_kernel.h"

#include <stdlib.h>
#include <string.h>

#if defined(SR_CPU_HAVE_X86_KERNELS)
#include <cpuid.h>
#endif

namespace sr::cpu {
namespace {
#if defined(SR_CPU_HAVE_X86_KERNELS)
// F16C and AVX512-BF16 from CPUID directly: clang 14's __builtin_cpu_supports knows neither.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
bool cpu_has_avx512_bf16() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & bit_AVX512BF16) != 0;
}
#endif
}  // namespace

int runnable_split_kernels(KernelBuild* out, int capacity) {
  int n = 0;
  auto add = [&](const char* isa, SplitKernel kernel) {
    if (n < capacity) out[n] = KernelBuild{isa, kernel};
    ++n;
  };
#if defined(SR_CPU_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  const bool f16c = cpu_has_f16c(), fma = __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && f16c && fma;
  if (avx512 && cpu_has_avx512_bf16()) add("avx512bf16", avx512bf16::run_split);
  if (avx512) add("avx512", avx512::run_split);
  if (__builtin_cpu_supports("avx2") && fma && f16c) add("avx2", avx2::run_split);
#endif
  add("generic", generic::run_split);
  return n;
}

SplitKernel select_split_kernel(const char** isa_name) {
  KernelBuild builds[kMaxKernelBuilds];
  const int n = runnable_split_kernels(builds, kMaxKernelBuilds);
  // avx512bf16 only when asked for: on a 16-core Xeon it was 1.08x faster on one thread and
  // 0.86x on sixteen, and its logits carry 2^-16 of sum |q k| (bench/NOTES.md, stop 29).
  int chosen = strcmp(builds[0].isa, "avx512bf16") == 0 && n > 1 ? 1 : 0;
  // SINKROUTER_CPU_ISA names a build this CPU runs (else the default above).
  if (const char* wanted = getenv("SINKROUTER_CPU_ISA")) {
    for (int i = 0; i < n; ++i) {
      if (strcmp(builds[i].isa, wanted) == 0) chosen = i;
    }
  }
  *isa_name = builds[chosen].isa;
  return builds[chosen].kernel;
}

}  // namespace sr::cpu
