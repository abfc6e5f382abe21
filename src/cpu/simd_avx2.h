// 8-lane fp32 vectors on AVX2 + FMA (+ F16C for fp16 inputs). Include only in files built with those flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/simd_exp.h"

namespace flashsci::cpu::simd {
namespace {

struct Avx2 {
    static constexpr int kLanes = 8;
    static constexpr int kTileRows = 6;  // query rows per register tile (fast_block.h)
    using F = __m256;

    static F zero() { return _mm256_setzero_ps(); }
    static F set1(float x) { return _mm256_set1_ps(x); }
    static F load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, F x) { _mm256_storeu_ps(p, x); }
    static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }  // a·b + c, one rounding
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static F add(F a, F b) { return _mm256_add_ps(a, b); }
    static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
    static F max(F a, F b) { return _mm256_max_ps(a, b); }  // b where either is NaN
    static bool any_greater(F a, F b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0; }  // NaN: no

    static float reduce_max(F x) {
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
    }
    static float reduce_add(F x) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
    }

    // dst[c·ld_dst + r] = src[r·ld_src + c] for r, c < 8.
    static void transpose(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
        F row[kLanes], pair[kLanes];
        for (int r = 0; r < kLanes; ++r) row[r] = load(src + r * ld_src);
        for (int r = 0; r < kLanes; r += 2) {  // interleave rows 2i, 2i + 1
            pair[r] = _mm256_unpacklo_ps(row[r], row[r + 1]);
            pair[r + 1] = _mm256_unpackhi_ps(row[r], row[r + 1]);
        }
        for (int r = 0; r < kLanes; r += 4)
            for (int h = 0; h < 2; ++h) {  // columns 4i + {0, 1} (h = 0) and {2, 3} (h = 1) of four rows
                row[r + 2 * h] = _mm256_shuffle_ps(pair[r + h], pair[r + h + 2], _MM_SHUFFLE(1, 0, 1, 0));
                row[r + 2 * h + 1] = _mm256_shuffle_ps(pair[r + h], pair[r + h + 2], _MM_SHUFFLE(3, 2, 3, 2));
            }
        for (int c = 0; c < 4; ++c) {  // 128-bit halves: rows 0-3 and 4-7 of columns c and c + 4
            store(dst + c * ld_dst, _mm256_permute2f128_ps(row[c], row[c + 4], 0x20));
            store(dst + (c + 4) * ld_dst, _mm256_permute2f128_ps(row[c], row[c + 4], 0x31));
        }
    }

    static F from_bf16(const uint16_t* p) {
        const __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
    }
    static F from_fp16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

    // e^x (see simd_exp.h).
    static F exp(F x) {
        const F underflow = _mm256_cmp_ps(x, set1(kExpMin), _CMP_LT_OQ);  // false for NaN
        x = _mm256_max_ps(set1(kExpMin), _mm256_min_ps(set1(kExpMax), x));  // NaN passes through
        const F n = _mm256_floor_ps(fma(x, set1(kLog2e), set1(0.5f)));
        const F r = _mm256_fnmadd_ps(n, set1(kLn2Low), _mm256_fnmadd_ps(n, set1(kLn2High), x));
        F poly = fma(set1(kExpP0), r, set1(kExpP1));
        poly = fma(poly, r, set1(kExpP2));
        poly = fma(poly, r, set1(kExpP3));
        poly = fma(poly, r, set1(kExpP4));
        poly = fma(poly, r, set1(kExpP5));
        const F e_r = add(fma(poly, mul(r, r), r), set1(1.0f));
        const __m256i biased = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(kFloatExponentBias));
        const F two_n = _mm256_castsi256_ps(_mm256_slli_epi32(biased, kFloatMantissaBits));
        return _mm256_andnot_ps(underflow, mul(e_r, two_n));
    }
};

}  // namespace
}  // namespace flashsci::cpu::simd
