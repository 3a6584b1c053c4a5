// The tensor-core instruction of the 16-bit and FP8 caches (mma.sync m16n8k16 with f32
// accumulation, sm_80 and newer; CUDA only) and the split of f32 operands into 16-bit terms: the
// caches' elements are exact in 16 bits (FP8 codes widen exactly to f16), but q and the softmax
// weights are f32, so they enter the MMA as a sum of terms (each a separate row or product) that
// together keep f32 precision.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include "element_access.cuh"
#include "sinkrouter/sinkrouter.h"

namespace sr::gpu {

// Two 16-bit values packed in one register (the lower k index in the low half), as mma.sync
// reads its operands.
template <int DT>
struct MmaOps;

template <>
struct MmaOps<SR_DTYPE_BF16> {
  // bf16 keeps 8 significant bits: three terms keep 24, f32's precision.
  static constexpr int kTerms = 3;
  // bf16 has f32's exponent range, so operands need no scaling.
  static constexpr bool kScaleQ = false;
  static constexpr float kWeightScale = 1.f;

  // The pair (a, b) rounded to bf16 and packed; a and b keep what the rounding left out.
  __device__ static uint32_t take(float& a, float& b) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    uint32_t bits;
    memcpy(&bits, &h, sizeof bits);
    a -= __uint_as_float(bits << 16);
    b -= __uint_as_float(bits & 0xffff0000u);
    return bits;
  }

  // c += A (16 x 16, row-major fragment) * B (16 x 8, column-major fragment).
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct MmaOps<SR_DTYPE_F16> {
  // f16 keeps 11 significant bits: two terms keep 22. Its range is narrow, so q is scaled by a
  // power of two per head (its largest element to [2^10, 2^11)) and the weights (<= 1) by
  // 2^12, keeping the low terms out of the subnormals; the scale is divided out in f32.
  static constexpr int kTerms = 2;
  static constexpr bool kScaleQ = true;
  static constexpr float kWeightScale = 4096.f;

  __device__ static uint32_t take(float& a, float& b) {
    const __half2 h = __floats2half2_rn(a, b);
    const float2 kept = __half22float2(h);
    a -= kept.x;
    b -= kept.y;
    uint32_t bits;
    memcpy(&bits, &h, sizeof bits);
    return bits;
  }

  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// FP8 E4M3 codes widen exactly to f16 (element_access.cuh), so an FP8 cache runs the f16
// instruction on its widened codes; the rows' scales multiply logits and weights in f32.
template <>
struct MmaOps<SR_DTYPE_FP8_E4M3> : MmaOps<SR_DTYPE_F16> {};

// A load of cache elements as MMA operand words: 8 elements, two per word. 16-bit elements are
// the words as loaded; FP8 loads hold 8 codes in their first two words, widened here at use,
// never at load time (a conversion would wait for the load and stall the pipeline). The other
// two words of an FP8 load are free: the streamed passes carry row scales there.
template <int DT>
__device__ __forceinline__ Bytes16 mma_elements(const Bytes16& loaded) {
  if constexpr (DT == SR_DTYPE_FP8_E4M3) {
    return Bytes16{{fp8x2_to_f16x2(loaded.w[0] & 0xffffu), fp8x2_to_f16x2(loaded.w[0] >> 16),
                    fp8x2_to_f16x2(loaded.w[1] & 0xffffu), fp8x2_to_f16x2(loaded.w[1] >> 16)}};
  } else {
    return loaded;
  }
}

// The low halves of x and y in one register (x's first), or their high halves.
__device__ __forceinline__ uint32_t low_halves(uint32_t x, uint32_t y) { return __byte_perm(x, y, 0x5410); }
__device__ __forceinline__ uint32_t high_halves(uint32_t x, uint32_t y) { return __byte_perm(x, y, 0x7632); }

}  // namespace sr::gpu
