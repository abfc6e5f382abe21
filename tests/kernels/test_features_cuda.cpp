// Sliding window, softcap and ALiBi on the general CUDA path against the CPU backend on the same fresh random
// inputs (tests/kernels/test_sm90_features.cpp covers the Hopper path).
#include "feature_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {

const Path kGeneral{"general", "cuda_general"};

}  // namespace

TEST_CASE("general CUDA: sliding windows under every mask at odd seqlens match the CPU backend", "[gpu][features]") {
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 17}, {17, 1}, {17, 129}, {129, 300}, {300, 129}, {1000, 1000}};
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const auto& [seqlen_q, seqlen_k] : seqlens)
            for (const flashsci_mask_t mask : kMasks)
                for (const auto& window : kWindows)
                    check_case(kGeneral, windowed(dtype, {2, seqlen_q, seqlen_k, 4, 2, 64}, mask, window));
}

// Windows far narrower than seqlen: most key tiles are skipped, and the band's edges cross tiles at every head dim.
TEST_CASE("general CUDA: narrow windows over long sequences skip key tiles", "[gpu][features]") {
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32})
        for (const int64_t head_dim : {40, 128, 256})
            for (const flashsci_mask_t mask : kMasks)
                check_case(kGeneral, windowed(dtype, {1, 2000, 3001, 2, 1, head_dim}, mask, {255, 100}));
}

TEST_CASE("general CUDA: softcap matches the CPU backend", "[gpu][features]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const float softcap : {1.0f, kSoftcap, 50.0f}) {
                Case c{dtype, {2, 129, 300, 4, 2, 96}, mask};
                c.softcap = softcap;
                check_case(kGeneral, c);
            }
}

TEST_CASE("general CUDA: ALiBi matches the CPU backend", "[gpu][features]") {
    const std::pair<int64_t, int64_t> seqlens[] = {{300, 129}, {129, 300}, {1, 17}};
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const auto& [seqlen_q, seqlen_k] : seqlens) {
                Case c{dtype, {2, seqlen_q, seqlen_k, 8, 2, 64}, mask};
                c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                check_case(kGeneral, c);
            }
}

TEST_CASE("general CUDA: window, softcap and ALiBi together, BHSD, in a CUDA graph", "[gpu][features]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const auto& window : kWindows) {
                Case c = windowed(dtype, {2, 129, 300, 6, 2, 128}, mask, window);
                c.storage = Storage::bhsd;
                c.softcap = kSoftcap;
                c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                check_case(kGeneral, c, Launch::graph);
            }
}
