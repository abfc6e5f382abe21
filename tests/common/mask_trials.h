// Random masked problems for the tile schedules' brute-force tests (tests/kernels/<kernel>/): a mask, sequence
// lengths (1 a quarter of the time) and a window, as the kernels' Problem and as the fp64 reference's shape and
// features, to compare a schedule against reference.h's visible keys.
#pragma once

#include <flashsci.h>

#include <cstdint>
#include <random>

#include "problem.h"
#include "reference.h"

namespace flashsci::test {

struct MaskTrial {
    flashsci_mask_t mask;
    int64_t len_q, len_k, left, right;

    // The kernels' view: one sequence with this mask and window.
    kernels::Problem problem() const {
        kernels::Problem p{};
        p.mask = mask == FLASHSCI_MASK_CAUSAL                ? kernels::Mask::causal_top_left
                 : mask == FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT ? kernels::Mask::causal_bottom_right
                                                             : kernels::Mask::none;
        p.window_left = left, p.window_right = right;
        return p;
    }
    // The reference's view, for visible_keys().
    Shape shape() const { return {1, len_q, len_k, 1, 1, 64}; }
    Features features() const { return {left, right, 0.0, 0.0}; }
};

// Trial number `trial`: the masks in turn, lengths in [1, 300], window sides in [-1, 70]; `coin` (uniform in
// [0, 3]) is the caller's, which draws its tile sizes with it next.
inline MaskTrial random_mask_trial(std::mt19937_64& rng, std::uniform_int_distribution<int64_t>& coin, int trial) {
    static constexpr flashsci_mask_t kMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL,
                                                 FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
    std::uniform_int_distribution<int64_t> length(1, 300), window(-1, 70);
    MaskTrial t{kMasks[trial % 3], 0, 0, 0, 0};
    t.len_q = coin(rng) == 0 ? 1 : length(rng);
    t.len_k = coin(rng) == 0 ? 1 : length(rng);
    t.left = window(rng);
    t.right = window(rng);
    return t;
}

}  // namespace flashsci::test
