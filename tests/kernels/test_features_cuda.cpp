// Sliding window, softcap and ALiBi on the general CUDA path against the CPU backend on the same fresh random
// inputs; and select_kernel keeping the Hopper path (which has none of them) off such plans.
#include "gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {

const Path kGeneral{"general", "cuda_general"};
const Path kAutomatic{"", "cuda_general"};  // FLASHSCI_KERNEL empty: select_kernel's own choice

constexpr std::pair<int64_t, int64_t> kWindows[] = {{0, 0}, {16, -1}, {-1, 8}, {5, 3}};
constexpr float kSoftcap = 5.0f;
// ALiBi slopes as in the ALiBi paper: 2^(-8h/heads) for head h = 1..heads.
constexpr double kAlibiExponent = 8.0;

std::vector<float> alibi_slopes(int64_t heads) {
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-kAlibiExponent * double(h) / double(heads))));
    return slopes;
}

Case windowed(flashsci_dtype_t dtype, Shape shape, flashsci_mask_t mask, std::pair<int64_t, int64_t> window) {
    Case c{dtype, shape, mask};
    c.window_left = window.first, c.window_right = window.second;
    return c;
}

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

// bf16 at head_dim 128 would take the Hopper path on an H100; each feature must send it to the general path.
TEST_CASE("a window, softcap or ALiBi keeps select_kernel off the Hopper path", "[gpu][features][quick]") {
    const Shape shape{2, 256, 256, 4, 4, 128};
    Case window = windowed(FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_CAUSAL, {64, 0});
    Case softcap{FLASHSCI_DTYPE_FLOAT16, shape, FLASHSCI_MASK_NONE};
    softcap.softcap = kSoftcap;
    Case alibi{FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
    alibi.alibi_slopes = alibi_slopes(shape.heads_q);
    const std::pair<Case, const char*> cases[] = {{window, "window"}, {softcap, "softcap"}, {alibi, "ALiBi"}};
    for (const auto& [c, feature] : cases) {
        check_case(kAutomatic, c);

        const ScopedEnvironment force("FLASHSCI_KERNEL", "sm90");
        Plan plan(FLASHSCI_BACKEND_CUDA);
        configure(plan, c, place(c));
        const char* name = nullptr;
        CHECK(flashsci_plan_get_kernel_name(plan, &name) == FLASHSCI_STATUS_NOT_SUPPORTED);
        INFO("message: " << flashsci_last_error());
        CHECK(std::string(flashsci_last_error()).find(feature) != std::string::npos);
    }
}
