// 8-lane fp32 vectors in the compiler's generic vector types: whatever the target has (SSE2 on any x86-64,
// NEON on aarch64), no FMA contraction, no instruction set assumed.
#pragma once

#include <cstdint>

#include "cpu/half.h"
#include "cpu/simd_exp.h"

namespace flashsci::cpu::simd {
namespace {

// GCC ignores vector_size on a type that depends on a template parameter: one specialisation per width.
template <int LANES>
struct GenericVectors;
template <>
struct GenericVectors<8> {
    typedef float F __attribute__((vector_size(8 * sizeof(float))));
    typedef uint32_t U __attribute__((vector_size(8 * sizeof(uint32_t))));
};
template <>
struct GenericVectors<16> {
    typedef float F __attribute__((vector_size(16 * sizeof(float))));
    typedef uint32_t U __attribute__((vector_size(16 * sizeof(uint32_t))));
};

// LANES floats per vector, TILE_ROWS query rows per register tile (fast_block.h). The library builds
// Portable; the tests also build the AVX-512 geometry on it (16 lanes, 12 rows) to check that geometry's
// logic on any CPU.
template <int LANES, int TILE_ROWS>
struct PortableVectors {
    static constexpr int kLanes = LANES;
    static constexpr int kTileRows = TILE_ROWS;
    using F = typename GenericVectors<LANES>::F;
    using U = typename GenericVectors<LANES>::U;

    static F zero() { return F{}; }
    static F set1(float x) { return F{} + x; }
    static F load(const float* p) {
        F x;
        __builtin_memcpy(&x, p, sizeof x);
        return x;
    }
    static void store(float* p, F x) { __builtin_memcpy(p, &x, sizeof x); }
    static F fma(F a, F b, F c) { return a * b + c; }
    static F mul(F a, F b) { return a * b; }
    static F add(F a, F b) { return a + b; }
    static F sub(F a, F b) { return a - b; }
    static F max(F a, F b) { return a > b ? a : b; }  // b where either is NaN, as maxps
    static bool any_greater(F a, F b) {  // NaN: no
        for (int i = 0; i < kLanes; ++i)
            if (a[i] > b[i]) return true;
        return false;
    }

    static float reduce_max(F x) {
        float m = x[0];
        for (int i = 1; i < kLanes; ++i) m = x[i] > m ? x[i] : m;
        return m;
    }
    static float reduce_add(F x) {
        float s = x[0];
        for (int i = 1; i < kLanes; ++i) s += x[i];
        return s;
    }

    static F from_bits(U bits) {
        F x;
        __builtin_memcpy(&x, &bits, sizeof x);
        return x;
    }
    static U to_bits(F x) {
        U bits;
        __builtin_memcpy(&bits, &x, sizeof bits);
        return bits;
    }
    // dst[c·ld_dst + r] = src[r·ld_src + c] for r, c < kLanes.
    static void transpose(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
        for (int r = 0; r < kLanes; ++r)
            for (int c = 0; c < kLanes; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
    }

    static F from_bf16(const uint16_t* p) {
        U bits;
        for (int i = 0; i < kLanes; ++i) bits[i] = uint32_t(p[i]) << 16;
        return from_bits(bits);
    }
    static F from_fp16(const uint16_t* p) {
        F x;
        for (int i = 0; i < kLanes; ++i) x[i] = fp16_to_float(p[i]);
        return x;
    }

    // e^x (see simd_exp.h); n = round(x·log2 e) by the 1.5·2²³ shifter, whose low mantissa bits then hold n.
    static F exp(F x) {
        constexpr float kShifter = 12582912.0f;  // 1.5·2²³
        const auto underflow = x < kExpMin;      // false for NaN
        x = kExpMin > x ? set1(kExpMin) : x;     // NaN passes through
        x = x > kExpMax ? set1(kExpMax) : x;
        const F shifted = x * kLog2e + kShifter;
        const F n = shifted - kShifter;
        const F r = (x - n * kLn2High) - n * kLn2Low;
        F poly = kExpP0 * r + kExpP1;
        poly = poly * r + kExpP2;
        poly = poly * r + kExpP3;
        poly = poly * r + kExpP4;
        poly = poly * r + kExpP5;
        const F e_r = poly * (r * r) + r + 1.0f;
        const U biased = to_bits(shifted) - to_bits(set1(kShifter)) + uint32_t(kFloatExponentBias);
        const F result = e_r * from_bits(biased << kFloatMantissaBits);
        return underflow ? F{} : result;
    }

};

using Portable = PortableVectors<8, 6>;

}  // namespace
}  // namespace flashsci::cpu::simd
