// Sliding window, softcap and ALiBi on the Hopper path (forced with FLASHSCI_KERNEL=sm90) against the CPU
// backend on the same fresh random inputs, and select_kernel choosing that path for them by itself.
#include "feature_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {

const Path kSm90{"sm90", "sm90_"};
constexpr flashsci_dtype_t kHalfDtypes[] = {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16};

}  // namespace

TEST_CASE("sm90: sliding windows under every mask at odd seqlens match the CPU backend", "[gpu][sm90][features]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 17}, {17, 1}, {129, 300}, {300, 129}, {1000, 1000}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const auto& [seqlen_q, seqlen_k] : seqlens)
                for (const flashsci_mask_t mask : kMasks)
                    for (const auto& window : kWindows)
                        check_case(kSm90, windowed(dtype, {2, seqlen_q, seqlen_k, 4, 2, head_dim}, mask, window));
}

// Bands far narrower than the sequence: most key blocks are skipped, the band's edges cross blocks of
// every tile width (80, 128, 192 keys), and some tiles' rows see keys only in masked blocks.
TEST_CASE("sm90: narrow and wide windows over long sequences", "[gpu][sm90][features]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> windows[] = {{255, 100}, {1000, 0}, {0, 700}, {129, 129}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_mask_t mask : kMasks)
            for (const auto& window : windows)
                check_case(kSm90, windowed(FLASHSCI_DTYPE_BFLOAT16, {1, 2000, 3001, 2, 1, head_dim}, mask, window));
}

TEST_CASE("sm90: softcap matches the CPU backend", "[gpu][sm90][features]") {
    if (!fast_path_available()) return;
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const flashsci_mask_t mask : kMasks)
                for (const float softcap : {1.0f, kSoftcap, 50.0f}) {
                    Case c{dtype, {2, 129, 300, 4, 2, head_dim}, mask};
                    c.softcap = softcap;
                    check_case(kSm90, c);
                }
}

TEST_CASE("sm90: ALiBi matches the CPU backend", "[gpu][sm90][features]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{300, 129}, {129, 300}, {1, 17}, {1000, 1000}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const flashsci_mask_t mask : kMasks)
                for (const auto& [seqlen_q, seqlen_k] : seqlens) {
                    Case c{dtype, {2, seqlen_q, seqlen_k, 8, 2, head_dim}, mask};
                    c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                    check_case(kSm90, c);
                }
}

TEST_CASE("sm90: window, softcap and ALiBi together, BHSD and packed QKV, in a CUDA graph", "[gpu][sm90][features][quick]") {
    if (!fast_path_available()) return;
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_mask_t mask : kMasks)
            for (const Storage storage : {Storage::bhsd, Storage::packed_qkv}) {
                const int64_t seqlen_q = storage == Storage::packed_qkv ? 300 : 129;  // packed: one seqlen
                Case c = windowed(FLASHSCI_DTYPE_BFLOAT16, {2, seqlen_q, 300, 6, 6, head_dim}, mask, {40, 7});
                c.storage = storage;
                c.softcap = kSoftcap;
                c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                check_case(kSm90, c, Launch::graph);
            }
}

// Unforced, select_kernel runs each feature on the Hopper path and says so in the kernel name.
TEST_CASE("sm90: select_kernel picks the Hopper path for windows, softcap and ALiBi", "[gpu][sm90][features][quick]") {
    if (!fast_path_available()) return;
    const Shape shape{2, 256, 256, 4, 4, 128};
    Case window = windowed(FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_CAUSAL, {64, 0});
    Case softcap{FLASHSCI_DTYPE_FLOAT16, shape, FLASHSCI_MASK_NONE};
    softcap.softcap = kSoftcap;
    Case alibi{FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
    alibi.alibi_slopes = alibi_slopes(shape.heads_q);
    Case all = windowed(FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_NONE, {-1, 3});
    all.softcap = kSoftcap;
    all.alibi_slopes = alibi_slopes(shape.heads_q);
    const std::pair<Case, const char*> cases[] = {{window, "sm90_hd128_bf16_causal_window"},
                                                  {softcap, "sm90_hd128_f16_softcap"},
                                                  {alibi, "sm90_hd128_bf16_causal_alibi"},
                                                  {all, "sm90_hd128_bf16_window_softcap_alibi"}};
    for (const auto& [c, name] : cases) {
        const Path automatic{"", name};  // FLASHSCI_KERNEL empty: select_kernel's own choice
        check_case(automatic, c);
        Plan plan(FLASHSCI_BACKEND_CUDA);
        configure(plan, c, place(c));
        const char* kernel = nullptr;
        REQUIRE_FLASHSCI(flashsci_plan_get_kernel_name(plan, &kernel));
        CHECK(std::string(kernel) == name);
    }
}
