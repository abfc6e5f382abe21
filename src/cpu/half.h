// fp16 and bf16 <-> fp32 on the host, rounding to nearest even. Internal linkage (static): the files built
// with AVX2 or AVX-512 flags use these too, and a shared inline copy emitted there could be the one the
// linker keeps for code that runs on any CPU.
#pragma once

#include <cstdint>
#include <cstring>

namespace flashsci::cpu {

static inline float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}

static inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

static inline uint16_t float_to_bf16(float f) {
    uint32_t bits = float_to_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);  // quiet NaN
    uint32_t round_to_even = 0x7fffu + ((bits >> 16) & 1u);
    return uint16_t((bits + round_to_even) >> 16);
}

static inline float fp16_to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
    if (exponent == 0) {
        if (mantissa == 0) return bits_to_float(sign);
        float subnormal = float(mantissa) * 0x1p-24f;  // exact: 2^-14 · mantissa/1024
        return sign ? -subnormal : subnormal;
    }
    return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

static inline uint16_t float_to_fp16(float f) {
    uint32_t bits = float_to_bits(f);
    uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
    if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past 65504: inf
    if (magnitude < 0x38800000u) {                                  // below 2^-14: subnormal or zero
        // Scale so that one fp16 subnormal ulp (2^-24) becomes 1, then round to nearest even.
        float scaled = bits_to_float(magnitude) * 0x1p24f;
        uint32_t whole = uint32_t(scaled);
        float fraction = scaled - float(whole);
        if (fraction > 0.5f || (fraction == 0.5f && (whole & 1u))) ++whole;
        return uint16_t(sign | whole);
    }
    uint32_t round_to_even = 0xfffu + ((magnitude >> 13) & 1u);
    magnitude += round_to_even;
    return uint16_t(sign | (((magnitude >> 23) - 112u) << 10) | ((magnitude >> 13) & 0x3ffu));
}

}  // namespace flashsci::cpu
