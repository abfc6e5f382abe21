// fp16/bf16 <-> fp32 at the edge cases: ties to even, subnormals, overflow, inf and NaN.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/half.h"

using namespace flashsci::cpu;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

constexpr uint16_t kFp16One = 0x3c00, kFp16OneNextUp = 0x3c01, kFp16OneNextUp2 = 0x3c02;
constexpr uint16_t kFp16Max = 0x7bff;              // 65504
constexpr uint16_t kFp16MinSubnormal = 0x0001;     // 2^-24
constexpr uint16_t kFp16MaxSubnormal = 0x03ff;     // 1023 · 2^-24
constexpr uint16_t kFp16MinNormal = 0x0400;        // 2^-14
constexpr uint16_t kFp16Inf = 0x7c00, kFp16NegativeInf = 0xfc00;
constexpr uint16_t kFp16NegativeZero = 0x8000;
constexpr uint16_t kFp16ExponentMask = 0x7c00, kFp16MantissaMask = 0x03ff;

constexpr uint16_t kBf16One = 0x3f80, kBf16OneNextUp = 0x3f81, kBf16OneNextUp2 = 0x3f82;
constexpr uint16_t kBf16Max = 0x7f7f;
constexpr uint16_t kBf16Inf = 0x7f80, kBf16NegativeInf = 0xff80;
constexpr uint16_t kBf16ExponentMask = 0x7f80, kBf16MantissaMask = 0x007f;

constexpr float kFp16Ulp1 = 0x1p-10f;  // fp16 spacing at 1
constexpr float kBf16Ulp1 = 0x1p-7f;   // bf16 spacing at 1

bool is_fp16_nan(uint16_t h) { return (h & kFp16ExponentMask) == kFp16ExponentMask && (h & kFp16MantissaMask) != 0; }
bool is_bf16_nan(uint16_t h) { return (h & kBf16ExponentMask) == kBf16ExponentMask && (h & kBf16MantissaMask) != 0; }

}  // namespace

TEST_CASE("fp16 rounds ties to even", "[cpu][half]") {
    CHECK(float_to_fp16(1.0f + 0.5f * kFp16Ulp1) == kFp16One);          // tie, even below
    CHECK(float_to_fp16(1.0f + 1.5f * kFp16Ulp1) == kFp16OneNextUp2);   // tie, even above
    CHECK(float_to_fp16(1.0f + 0.5f * kFp16Ulp1 + 0x1p-20f) == kFp16OneNextUp);  // just past the tie
    CHECK(float_to_fp16(-(1.0f + 0.5f * kFp16Ulp1)) == (kFp16One | kFp16NegativeZero));
}

TEST_CASE("fp16 subnormals round trip and round to nearest even", "[cpu][half]") {
    CHECK(fp16_to_float(kFp16MinSubnormal) == 0x1p-24f);
    CHECK(fp16_to_float(kFp16MaxSubnormal) == 1023 * 0x1p-24f);
    CHECK(fp16_to_float(kFp16MinNormal) == 0x1p-14f);
    for (uint16_t h : {kFp16MinSubnormal, uint16_t(0x0155), kFp16MaxSubnormal, kFp16MinNormal})
        CHECK(float_to_fp16(fp16_to_float(h)) == h);
    CHECK(float_to_fp16(0.5f * 0x1p-24f) == 0);                      // tie between 0 and the smallest: 0 is even
    CHECK(float_to_fp16(1.5f * 0x1p-24f) == 2);                      // tie between 1 and 2 ulps: 2
    CHECK(float_to_fp16(0.5f * 0x1p-24f + 0x1p-40f) == kFp16MinSubnormal);
    CHECK(float_to_fp16(1023.5f * 0x1p-24f) == kFp16MinNormal);      // the largest subnormal rounds up into the normals
    CHECK(float_to_fp16(-0.0f) == kFp16NegativeZero);
    CHECK(std::signbit(fp16_to_float(kFp16NegativeZero)));
}

TEST_CASE("fp16 overflows to inf exactly past the rounding boundary", "[cpu][half]") {
    CHECK(fp16_to_float(kFp16Max) == 65504.0f);
    CHECK(float_to_fp16(65504.0f) == kFp16Max);
    CHECK(float_to_fp16(65519.996f) == kFp16Max);  // below 65520, the midpoint to the next (absent) value
    CHECK(float_to_fp16(65520.0f) == kFp16Inf);    // the tie rounds to even, which is inf
    CHECK(float_to_fp16(1e10f) == kFp16Inf);
    CHECK(float_to_fp16(-1e10f) == kFp16NegativeInf);
}

TEST_CASE("fp16 keeps inf and NaN", "[cpu][half]") {
    CHECK(float_to_fp16(kInf) == kFp16Inf);
    CHECK(float_to_fp16(-kInf) == kFp16NegativeInf);
    CHECK(fp16_to_float(kFp16Inf) == kInf);
    CHECK(fp16_to_float(kFp16NegativeInf) == -kInf);
    CHECK(is_fp16_nan(float_to_fp16(std::numeric_limits<float>::quiet_NaN())));
    CHECK(std::isnan(fp16_to_float(0x7e00)));
    CHECK(std::isnan(fp16_to_float(0x7c01)));  // a signalling NaN stays NaN, not inf
}

TEST_CASE("bf16 rounds ties to even", "[cpu][half]") {
    CHECK(float_to_bf16(1.0f + 0.5f * kBf16Ulp1) == kBf16One);
    CHECK(float_to_bf16(1.0f + 1.5f * kBf16Ulp1) == kBf16OneNextUp2);
    CHECK(float_to_bf16(1.0f + 0.5f * kBf16Ulp1 + 0x1p-20f) == kBf16OneNextUp);
    CHECK(bf16_to_float(kBf16One) == 1.0f);
}

TEST_CASE("bf16 subnormals, overflow, inf and NaN", "[cpu][half]") {
    CHECK(bf16_to_float(0x0001) == 0x1p-133f);  // smallest bf16 subnormal: 2^-126 · 2^-7
    CHECK(float_to_bf16(0x1p-133f) == 0x0001);
    CHECK(float_to_bf16(0x1p-134f) == 0x0000);  // tie between 0 and the smallest: 0 is even
    CHECK(float_to_bf16(std::numeric_limits<float>::max()) == kBf16Inf);  // rounds past bf16's largest
    CHECK(float_to_bf16(bf16_to_float(kBf16Max)) == kBf16Max);
    CHECK(float_to_bf16(kInf) == kBf16Inf);
    CHECK(float_to_bf16(-kInf) == kBf16NegativeInf);
    CHECK(bf16_to_float(kBf16Inf) == kInf);
    // A NaN whose payload sits only in the low 16 bits must not truncate to inf.
    const float low_payload_nan = bits_to_float(0x7f800001u);
    CHECK(is_bf16_nan(float_to_bf16(low_payload_nan)));
    CHECK(is_bf16_nan(float_to_bf16(std::numeric_limits<float>::quiet_NaN())));
    CHECK(std::isnan(bf16_to_float(0x7fc0)));
}
