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

// The tf32 parts of N fp32 operand registers for kPasses products. One pass: big = x rounded to tf32 (to nearest,
// ties away). Three (3xTF32): big = x rounded the same way by integer carry and mask (full-rate ALU ops, not cvt),
// small = x − big, exact in fp32, which the tensor core reads truncated to tf32 (an error under 2^-21·|x|); a NaN
// x stays NaN in small. Split once per register and reused by every product it feeds.
constexpr uint32_t kTf32Mask = 0xffffe000u;     // sign, exponent and the 10 mantissa bits tf32 keeps
constexpr uint32_t kTf32HalfUlp = 0x00001000u;  // half of tf32's last place: the carry that rounds to nearest

template <int kPasses, int N>
struct Tf32Parts {
    static_assert(kPasses == 1 || kPasses == 3);
    uint32_t big[N];
    uint32_t small[kPasses == 3 ? N : 1];
};

template <int kPasses, int N>
__device__ __forceinline__ Tf32Parts<kPasses, N> split_tf32(const uint32_t (&x)[N]) {
    Tf32Parts<kPasses, N> parts;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        if constexpr (kPasses == 3) {
            parts.big[i] = (x[i] + kTf32HalfUlp) & kTf32Mask;
            parts.small[i] = __float_as_uint(__uint_as_float(x[i]) - __uint_as_float(parts.big[i]));
        } else {
            parts.big[i] = to_tf32(__uint_as_float(x[i]));
        }
    }
    return parts;
}

// C += A·B on tf32 parts, B being registers i, i + 1 of b: big·big into c; with three passes small·big + big·small
// (the small·small term, under 2^-22 relative, dropped) into c_small, which the caller adds to c once its sum is
// complete: summed apart, the small terms are not truncated against c's larger magnitude at every step.
template <int kPasses, int NB>
__device__ __forceinline__ void mma_tf32_parts(float (&c)[4], float (&c_small)[4], const Tf32Parts<kPasses, 4>& a,
                                               const Tf32Parts<kPasses, NB>& b, int i) {
    if constexpr (kPasses == 3) {
        mma_tf32(c_small, a.small, b.big[i], b.big[i + 1]);
        mma_tf32(c_small, a.big, b.small[i], b.small[i + 1]);
    }
    mma_tf32(c, a.big, b.big[i], b.big[i + 1]);
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
