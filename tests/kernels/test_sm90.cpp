// The Hopper fast path (forced with FLASHSCI_KERNEL=sm90) against the CPU backend on the same fresh
// random inputs; and select_kernel()'s fallbacks to the general path where the fast path cannot run.
#include "gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {

const Path kSm90{"sm90", "sm90_"};
const Path kAuto{"auto", "sm90_"};
const Path kFallback{"auto", "cuda_general"};
constexpr flashsci_dtype_t kHalfDtypes[] = {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16};

// The kernel a CUDA plan of case c runs is `name`.
void check_kernel_name(const Case& c, const std::string& name) {
    Plan plan(FLASHSCI_BACKEND_CUDA);
    configure(plan, c, place(c));
    const char* kernel = nullptr;
    REQUIRE_FLASHSCI(flashsci_plan_get_kernel_name(plan, &kernel));
    CHECK(std::string(kernel) == name);
}

}  // namespace

TEST_CASE("sm90: every head dim, dtype and mask at odd seqlens matches the CPU backend", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const int64_t seqlen : {1, 17, 127, 129, 1000})
                for (const flashsci_mask_t mask : kMasks)
                    check_case(kSm90, {dtype, {2, seqlen, seqlen, 2, 2, head_dim}, mask});
}

TEST_CASE("sm90: seqlen_q != seqlen_k under both causal alignments", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1000}, {1000, 1}, {17, 129}, {129, 17}, {300, 777}, {777, 300}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const auto& [seqlen_q, seqlen_k] : seqlens)
            for (const flashsci_mask_t mask : kMasks)
                check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {2, seqlen_q, seqlen_k, 2, 2, head_dim}, mask});
}

TEST_CASE("sm90: seqlen 4097, the first length past a long run of full tiles", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    for (const flashsci_mask_t mask : kMasks)
        check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {1, 4097, 4097, 2, 1, 128}, mask});
}

// The wide tiles (tiles.h) run plain problems: hd64's (192×128, three consumers) all of them, varlen too, hd128's
// (128×176) dense ones from 8192 keys. A ragged last key block, packed GQA, BHSD, ragged query tiles, both dtypes,
// named so; a causal mask (below 2048 keys, hd64's causal wide tile), a softcap or (hd128) one key fewer keeps the
// usual tile.
TEST_CASE("sm90: the wide hd64 and hd128 tiles, ragged, GQA, both dtypes", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> wide_from_keys[] = {{64, 0}, {128, 8192}};
    for (const auto& [head_dim, from] : wide_from_keys)
        for (const flashsci_dtype_t dtype : kHalfDtypes) {
            const std::string base = "sm90_hd" + std::to_string(head_dim) + (dtype == FLASHSCI_DTYPE_BFLOAT16 ? "_bf16" : "_f16");
            const std::string wide = base + "_wide";
            const int64_t keys = from > 0 ? from : 2048;
            check_case({"sm90", wide.c_str()}, {dtype, {1, 200, keys + 3, 4, 2, head_dim}});
            check_case({"sm90", wide.c_str()}, {dtype, {2, 17, keys, 2, 2, head_dim}, FLASHSCI_MASK_NONE, Storage::bhsd});
            check_case({"sm90", wide.c_str()}, {dtype, {1, 1000, keys + 129, 3, 1, head_dim}});
            if (from == 0) check_case({"sm90", wide.c_str()}, {dtype, {3, 193, 1, 2, 1, head_dim}});
            Case causal{dtype, {1, 17, keys - 1, 2, 2, head_dim}, FLASHSCI_MASK_CAUSAL};
            Case capped{dtype, {1, 17, keys, 2, 2, head_dim}};
            capped.softcap = 30.0f;
            std::vector<std::pair<Case, std::string>> usual = {{causal, base + "_causal"}, {capped, base + "_softcap"}};
            if (from > 0) usual.push_back({Case{dtype, {1, 17, from - 1, 2, 2, head_dim}}, base});
            for (const auto& [c, name] : usual) check_kernel_name(c, name);
        }
}

// Causal hd64 problems without a window, softcap or ALiBi take the wide tile from 2048 keys (tiles.h): a ragged
// last key block, both alignments, packed GQA, a long triangle of 192-row tiles, BHSD; one key fewer, a window or
// a softcap keeps the usual causal tile.
TEST_CASE("sm90: the causal wide hd64 tile from 2048 keys, both alignments, both dtypes", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    constexpr int64_t kFromKeys = 2048;
    for (const flashsci_dtype_t dtype : kHalfDtypes) {
        const std::string base = std::string("sm90_hd64") + (dtype == FLASHSCI_DTYPE_BFLOAT16 ? "_bf16" : "_f16");
        const std::string wide = base + "_causal_wide";
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
            check_case({"sm90", wide.c_str()}, {dtype, {1, 300, kFromKeys + 3, 4, 2, 64}, mask});
            check_case({"sm90", wide.c_str()}, {dtype, {2, 17, kFromKeys, 2, 2, 64}, mask, Storage::bhsd});
        }
        const int64_t long_triangle = 4 * kFromKeys + 3;
        check_case({"sm90", wide.c_str()}, {dtype, {1, long_triangle, long_triangle, 2, 1, 64}, FLASHSCI_MASK_CAUSAL});
        Case narrow{dtype, {1, 17, kFromKeys - 1, 2, 2, 64}, FLASHSCI_MASK_CAUSAL};
        Case windowed{dtype, {1, 17, kFromKeys, 2, 2, 64}, FLASHSCI_MASK_CAUSAL};
        windowed.window_left = 1000;
        Case capped{dtype, {1, 17, kFromKeys, 2, 2, 64}, FLASHSCI_MASK_CAUSAL};
        capped.softcap = 30.0f;
        const std::pair<Case, std::string> usual[] = {
            {narrow, base + "_causal"}, {windowed, base + "_causal_window"}, {capped, base + "_causal_softcap"}};
        for (const auto& [c, name] : usual) check_kernel_name(c, name);
    }
}

TEST_CASE("sm90: GQA 4:1 and 8:1, MQA", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> heads[] = {{8, 2}, {16, 2}, {8, 1}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const auto& [heads_q, heads_kv] : heads)
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL})
                check_case(kSm90, {FLASHSCI_DTYPE_FLOAT16, {2, 200, 333, heads_q, heads_kv, head_dim}, mask});
}

// A group of 2 to 64 query heads shares each tile's rows (packed GQA: K/V loaded once per group); groups of 3
// run a tile per head. Short and odd seqlens leave packed tiles and halves partly past the sequence.
TEST_CASE("sm90: packed GQA groups 2 to 64 and unpacked groups, odd seqlens, every mask, BHSD", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    const std::pair<int64_t, int64_t> heads[] = {{4, 2}, {8, 2}, {32, 2}, {8, 1}, {32, 1}, {64, 1}, {6, 2}, {12, 4}};
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1}, {17, 129}, {129, 17}, {100, 300}};
    for (const int64_t head_dim : kFastHeadDims)
        for (const auto& [heads_q, heads_kv] : heads)
            for (const auto& [seqlen_q, seqlen_k] : seqlens)
                for (const flashsci_mask_t mask : kMasks) {
                    const Storage storage = seqlen_q == 100 ? Storage::bhsd : Storage::bshd;
                    check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {2, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim}, mask,
                                       storage});
                }
}

TEST_CASE("sm90: BHSD strides, packed QKV, a custom scale, no LSE", "[gpu][sm90][quick]") {
    if (!fast_path_available()) return;
    for (const int64_t head_dim : kFastHeadDims)
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
            check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {2, 100, 150, 4, 2, head_dim}, mask, Storage::bhsd});
            check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {2, 129, 129, 4, 2, head_dim}, mask, Storage::packed_qkv});
            check_case(kSm90, {FLASHSCI_DTYPE_FLOAT16, {1, 300, 300, 2, 2, head_dim}, mask, Storage::bshd, 0.3f, false});
        }
}

TEST_CASE("sm90: a forward captured in a CUDA graph", "[gpu][sm90]") {
    if (!fast_path_available()) return;
    for (const flashsci_mask_t mask : kMasks)
        check_case(kSm90, {FLASHSCI_DTYPE_BFLOAT16, {2, 1000, 1000, 4, 2, 128}, mask}, Launch::graph);
}

TEST_CASE("select_kernel: AUTO takes the fast path where it can and the sm80 or general path elsewhere",
          "[gpu][sm90]") {
    if (!fast_path_available()) return;
    check_case(kAuto, {FLASHSCI_DTYPE_BFLOAT16, {2, 257, 257, 2, 2, 128}, FLASHSCI_MASK_CAUSAL});
    // Not in the fast path's tables: another head dim, fp32; the sm_80 forward runs them where the build has it.
    check_case(kAuto, {FLASHSCI_DTYPE_FLOAT16, {2, 257, 257, 2, 2, 96}, FLASHSCI_MASK_CAUSAL});
    const Path fallback = sm80_available() ? Path{"auto", "sm80_"} : kFallback;
    check_case(fallback, {FLASHSCI_DTYPE_BFLOAT16, {2, 257, 257, 2, 2, 80}, FLASHSCI_MASK_CAUSAL});
    check_case(fallback, {FLASHSCI_DTYPE_FLOAT32, {2, 257, 257, 2, 2, 128}, FLASHSCI_MASK_NONE});
}
