// The constants of the vector exp(x) every instruction set shares (Cephes expf): x = n·ln2 + r with
// n = round(x·log2 e), |r| <= ln2/2, r taken off in two parts (ln2 = kLn2High + kLn2Low, kLn2High exact in
// 9 bits) so n·kLn2High is exact; e^r = 1 + r + r²·P(r) with P of degree 5; e^x = 2^n·e^r. Relative error
// about 2⁻²³ over the range (2 ulp); below kExpMin the result is 0 (e^x < 2⁻¹²⁶ is negligible beside the
// softmax's largest weight, 1), and NaN stays NaN.
#pragma once

namespace flashsci::cpu::simd {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2High = 0.693359375f;
constexpr float kLn2Low = -2.12194440e-4f;
constexpr float kExpMin = -87.3365447504f;  // ln 2⁻¹²⁶
constexpr float kExpMax = 88.3762626647949f;
constexpr float kExpP0 = 1.9875691500e-4f;
constexpr float kExpP1 = 1.3981999507e-3f;
constexpr float kExpP2 = 8.3334519073e-3f;
constexpr float kExpP3 = 4.1665795894e-2f;
constexpr float kExpP4 = 1.6666665459e-1f;
constexpr float kExpP5 = 5.0000001201e-1f;
constexpr int kFloatExponentBias = 127;
constexpr int kFloatMantissaBits = 23;

}  // namespace flashsci::cpu::simd
