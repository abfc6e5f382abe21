// Cases for the plan features (sliding window, softcap, ALiBi) shared by the GPU path tests.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "gpu_cases.h"

namespace flashsci::test::gpu {

// Both sides bounded and not, the single-key diagonal band, and an asymmetric band.
inline constexpr std::pair<int64_t, int64_t> kWindows[] = {{0, 0}, {16, -1}, {-1, 8}, {5, 3}};
inline constexpr float kSoftcap = 5.0f;

// ALiBi slopes as in the ALiBi paper: 2^(-8h/heads) for head h = 1..heads.
inline std::vector<float> alibi_slopes(int64_t heads) {
    constexpr double kAlibiExponent = 8.0;
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-kAlibiExponent * double(h) / double(heads))));
    return slopes;
}

inline Case windowed(flashsci_dtype_t dtype, Shape shape, flashsci_mask_t mask, std::pair<int64_t, int64_t> window) {
    Case c{dtype, shape, mask};
    c.window_left = window.first, c.window_right = window.second;
    return c;
}

}  // namespace flashsci::test::gpu
