// The sm_80 instructions the forward and backward use beyond common/ptx.cuh's, one small helper each: tf32 mma.sync,
// shared loads, ex2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/ptx.cuh"

namespace flashsci::kernels::sm80 {

// x rounded to tf32 (10 mantissa bits, to nearest, ties away from zero), as the bits of an fp32.
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// C += A·B for a 16×8 A and an 8×8 B of tf32 (fragments as index.h's tf32_a, tf32_b), fp32 C.
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// fp32 operands on tf32 tensor cores in kPasses products: 1 (tf32: x rounded once), or 3 (3xTF32: x = big + small,
// big = tf32(x), small = tf32(x − big); C += small·big + big·small + big·big, the small·small term, ~2^-22 relative,
// dropped). a and b hold fp32 bits.
template <int kPasses>
__device__ __forceinline__ void mma_fp32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    static_assert(kPasses == 1 || kPasses == 3);
    uint32_t a_big[4], a_small[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        a_big[r] = to_tf32(__uint_as_float(a[r]));
        a_small[r] = to_tf32(__uint_as_float(a[r]) - __uint_as_float(a_big[r]));
    }
    const uint32_t b0_big = to_tf32(__uint_as_float(b0)), b1_big = to_tf32(__uint_as_float(b1));
    if constexpr (kPasses == 3) {
        const uint32_t b0_small = to_tf32(__uint_as_float(b0) - __uint_as_float(b0_big));
        const uint32_t b1_small = to_tf32(__uint_as_float(b1) - __uint_as_float(b1_big));
        mma_tf32(c, a_small, b0_big, b1_big);
        mma_tf32(c, a_big, b0_small, b1_small);
    }
    mma_tf32(c, a_big, b0_big, b1_big);
}

// One 32-bit word of shared memory (`address` in the shared window).
__device__ __forceinline__ uint32_t load_shared_word(uint32_t address) {
    uint32_t r;
    asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(r) : "r"(address));
    return r;
}

// 2^x, one MUFU.EX2 (relative error ~2^-22; 2^-inf = 0).
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// x, which the compiler can no longer see through: a pointer stepped through opaque() is not rewritten as the start
// plus loop-invariant offsets, and values derived from an opaque() copy inside a loop are recomputed there, not
// hoisted out of it and kept in registers for the whole kernel.
template <typename U>
__device__ __forceinline__ U* opaque(U* x) {
    asm volatile("" : "+l"(x));
    return x;
}
__device__ __forceinline__ int opaque(int x) {
    asm volatile("" : "+r"(x));
    return x;
}

}  // namespace flashsci::kernels::sm80
