// 16-lane fp32 vectors on AVX-512F. Include only in files built with that flag.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/simd_exp.h"

namespace flashsci::cpu::simd {
namespace {

struct Avx512 {
    static constexpr int kLanes = 16;
    static constexpr int kTileRows = 12;  // query rows per register tile (fast_block.h)
    using F = __m512;

    static F zero() { return _mm512_setzero_ps(); }
    static F set1(float x) { return _mm512_set1_ps(x); }
    static F load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, F x) { _mm512_storeu_ps(p, x); }
    static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c, one rounding
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F add(F a, F b) { return _mm512_add_ps(a, b); }
    static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
    static F max(F a, F b) { return _mm512_max_ps(a, b); }  // b where either is NaN
    static bool any_greater(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }  // NaN: no

    // Halving trees, lane i with lane i + width/2, in memory: the register forms of the upper halves
    // (_mm512_extractf64x4_pd and the like) make GCC 12 warn of an uninitialized operand inside its headers.
    static float reduce_max(F x) {
        return reduce(x, [](float a, float b) { return a > b ? a : b; });  // b where either is NaN, as maxps
    }
    static float reduce_add(F x) {
        return reduce(x, [](float a, float b) { return a + b; });
    }
    template <class Op>
    static float reduce(F x, Op op) {
        alignas(64) float v[kLanes];
        _mm512_store_ps(v, x);
        for (int width = kLanes / 2; width >= 1; width /= 2)
            for (int i = 0; i < width; ++i) v[i] = op(v[i], v[i + width]);
        return v[0];
    }

    // dst[c·ld_dst + r] = src[r·ld_src + c] for r, c < kLanes.
    static void transpose(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
        for (int r = 0; r < kLanes; ++r)
            for (int c = 0; c < kLanes; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
    }

    static F from_bf16(const uint16_t* p) {
        const __m512i widened = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(widened, 16));
    }
    static F from_fp16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

    // e^x (see simd_exp.h).
    static F exp(F x) {
        const __mmask16 underflow = _mm512_cmp_ps_mask(x, set1(kExpMin), _CMP_LT_OQ);  // false for NaN
        x = _mm512_max_ps(set1(kExpMin), _mm512_min_ps(set1(kExpMax), x));       // NaN passes through
        const F n = _mm512_roundscale_ps(fma(x, set1(kLog2e), set1(0.5f)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const F r = _mm512_fnmadd_ps(n, set1(kLn2Low), _mm512_fnmadd_ps(n, set1(kLn2High), x));
        F poly = fma(set1(kExpP0), r, set1(kExpP1));
        poly = fma(poly, r, set1(kExpP2));
        poly = fma(poly, r, set1(kExpP3));
        poly = fma(poly, r, set1(kExpP4));
        poly = fma(poly, r, set1(kExpP5));
        const F e_r = add(fma(poly, mul(r, r), r), set1(1.0f));
        const __m512i biased = _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(kFloatExponentBias));
        const F two_n = _mm512_castsi512_ps(_mm512_slli_epi32(biased, kFloatMantissaBits));
        return _mm512_maskz_mov_ps(_mm512_knot(underflow), mul(e_r, two_n));
    }
};

}  // namespace
}  // namespace flashsci::cpu::simd
