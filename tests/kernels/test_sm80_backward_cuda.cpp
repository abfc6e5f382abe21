// The sm_80 backward (forced with FLASHSCI_KERNEL=sm80) against the CPU backend's backward on the same fresh random
// inputs (tests/common/backward_cases.h): every head-dim bucket and head dims padded inside one, fp16 and bf16, odd
// and unequal seqlens, every mask, window, softcap and ALiBi, GQA/MQA, 16-byte aligned strided layouts, varlen
// batches with empty sequences, deterministic runs bitwise identical over 10 runs, graph capture; misaligned layouts
// and fp32 fall back to the general backward, and forcing sm80 on them fails with NOT_SUPPORTED.
#include "backward_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;
using namespace flashsci::test::gpu::backward;

namespace {

constexpr const char* kForceSm80 = "sm80";
constexpr const char* kAutomatic = "";  // select_kernel's own choice
constexpr flashsci_dtype_t kHalfDtypes[] = {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16};
constexpr int64_t kBuckets[] = {64, 128, 256};
// Head dims padded inside a bucket (8, 40 in 64; 72, 96 in 128; 136, 200 in 256).
constexpr int64_t kPaddedHeadDims[] = {8, 40, 72, 96, 136, 200};

void check_sm80(const BackwardCase& c, Launch launch = Launch::stream, int runs = 1) {
    check_backward(c, kForceSm80, launch, runs);
}

// The status of flashsci_plan_get_backward_workspace_size for case c under FLASHSCI_KERNEL=force.
flashsci_status_t workspace_status(const char* force, const BackwardCase& c) {
    const ScopedEnvironment forced("FLASHSCI_KERNEL", force);
    Plan plan(FLASHSCI_BACKEND_CUDA);
    const Extent e = extent_of(c);
    configure(plan, c, e, place(c, e), alibi_slopes(c));
    size_t bytes = 0;
    return flashsci_plan_get_backward_workspace_size(plan, &bytes);
}

}  // namespace

TEST_CASE("sm80 backward: every bucket, dtype and mask at odd seqlens matches the CPU backend",
          "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kBuckets)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const int64_t seqlen : {1, 17, 127, 129, 1000})
                for (const flashsci_mask_t mask : kMasks)
                    check_sm80({dtype, {2, seqlen, seqlen, 2, 2, head_dim}, mask});
}

TEST_CASE("sm80 backward: head dims padded inside each bucket", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kPaddedHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
                check_sm80({dtype, {1, 130, 257, 2, 1, head_dim}, mask});
}

TEST_CASE("sm80 backward: seqlen_q != seqlen_k under both causal alignments, every bucket", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1000}, {1000, 1}, {17, 129}, {129, 17}, {77, 300}, {300, 77}};
    for (const int64_t head_dim : kBuckets)
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const auto& [seqlen_q, seqlen_k] : seqlens)
                for (const flashsci_mask_t mask : kMasks)
                    check_sm80({dtype, {2, seqlen_q, seqlen_k, 2, 2, head_dim}, mask});
}

TEST_CASE("sm80 backward: GQA 4:1, MQA and 5:1 sum dk and dv over the group", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> heads[] = {{8, 2}, {8, 1}, {5, 1}};
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const auto& [heads_q, heads_kv] : heads)
            for (const flashsci_mask_t mask : kMasks)
                for (const bool deterministic : {false, true})
                    check_sm80({dtype, {2, 129, 200, heads_q, heads_kv, 64}, mask, Layouts::contiguous, deterministic});
}

TEST_CASE("sm80 backward: windows, softcap and ALiBi", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks) check_windows(dtype, mask, kForceSm80);
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const int64_t head_dim : {40, 128, 256})
            check_sm80({dtype,
                        {1, 129, 100, 2, 1, head_dim},
                        FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                        Layouts::contiguous,
                        true,
                        30,
                        2,
                        2.0f,
                        true});
}

TEST_CASE("sm80 backward: BHSD and 16-byte aligned padded strides on every tensor", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const int64_t head_dim : {40, 128, 256})
            for (const Layouts layouts : {Layouts::bhsd, Layouts::aligned})
                for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL})
                    for (const bool deterministic : {false, true})
                        check_sm80({dtype, {2, 100, 150, 4, 2, head_dim}, mask, layouts, deterministic});
}

TEST_CASE("sm80 backward: misaligned strides and fp32 run the general backward, and forcing sm80 on them fails",
          "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const bool deterministic : {false, true}) {
            // strides off whole chunks: the general backward from the workspace query on
            check_backward({dtype, {2, 100, 150, 4, 2, 40}, FLASHSCI_MASK_CAUSAL, Layouts::padded, deterministic},
                           kAutomatic);
            // chunk strides but misaligned pointers: the workspace query (no pointers yet) selects sm80, the call
            // runs the general backward in the workspace it was sized for
            check_backward({dtype, {2, 100, 150, 4, 2, 64}, FLASHSCI_MASK_CAUSAL, Layouts::shifted, deterministic},
                           kAutomatic);
        }
    const BackwardCase fp32{FLASHSCI_DTYPE_FLOAT32, {1, 64, 64, 1, 1, 64}};
    CHECK(workspace_status(kAutomatic, fp32) == FLASHSCI_STATUS_SUCCESS);
    CHECK(workspace_status(kForceSm80, fp32) == FLASHSCI_STATUS_NOT_SUPPORTED);
    CHECK(std::string(flashsci_last_error()).find("FLASHSCI_KERNEL=sm80") != std::string::npos);
    // head_dim 40 with padded strides (not multiples of 8 elements)
    const BackwardCase misaligned{FLASHSCI_DTYPE_BFLOAT16, {1, 64, 64, 2, 2, 40}, FLASHSCI_MASK_NONE, Layouts::padded};
    CHECK(workspace_status(kForceSm80, misaligned) == FLASHSCI_STATUS_NOT_SUPPORTED);
    CHECK(workspace_status("general", misaligned) == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("sm80 backward: varlen batches with empty sequences", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const int64_t head_dim : kBuckets)
            for (const flashsci_mask_t mask : kMasks)
                for (const Layouts layouts : {Layouts::contiguous, Layouts::aligned})
                    check_empty_sequences({dtype, {0, 0, 0, 4, 2, head_dim}, mask, layouts}, kForceSm80);
}

TEST_CASE("sm80 backward: deterministic runs are bitwise identical", "[gpu][sm80][backward]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kBuckets)
        check_sm80({FLASHSCI_DTYPE_BFLOAT16,
                    {2, 300, 500, 8, 2, head_dim},
                    FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                    Layouts::contiguous,
                    true},
                   Launch::stream, kDeterministicRuns);
    check_sm80({FLASHSCI_DTYPE_FLOAT16, {1, 1000, 1000, 1, 1, 64}, FLASHSCI_MASK_NONE, Layouts::contiguous, true},
               Launch::stream, kDeterministicRuns);
    BackwardCase c{FLASHSCI_DTYPE_FLOAT16, {0, 0, 0, 6, 3, 96}, FLASHSCI_MASK_CAUSAL, Layouts::aligned, true};
    c.lens_q = {300, 0, 77}, c.lens_k = {280, 9, 400};
    check_sm80(c, Launch::stream, kDeterministicRuns);
}

// Small enough for the slower compute-sanitizer tools, which run the [quick] tests.
TEST_CASE("sm80 backward: every feature at once on a small problem", "[gpu][sm80][backward][quick]") {
    if (!sm80_available()) return;
    for (const bool deterministic : {false, true}) {
        check_sm80({FLASHSCI_DTYPE_BFLOAT16,
                    {2, 70, 90, 4, 2, 40},
                    FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                    Layouts::aligned,
                    deterministic,
                    20,
                    5,
                    3.0f,
                    true});
        check_sm80({FLASHSCI_DTYPE_FLOAT16,
                    {1, 33, 20, 3, 1, 256},
                    FLASHSCI_MASK_CAUSAL,
                    Layouts::bhsd,
                    deterministic,
                    -1,
                    -1,
                    0.0f,
                    true});
        check_sm80({FLASHSCI_DTYPE_FLOAT16,
                    {1, 20, 40, 2, 2, 128},
                    FLASHSCI_MASK_NONE,
                    Layouts::contiguous,
                    deterministic,
                    4,
                    4});
    }
}

TEST_CASE("sm80 backward: captured in a CUDA graph and replayed", "[gpu][sm80][backward][quick]") {
    if (!sm80_available()) return;
    for (const bool deterministic : {false, true}) {
        check_sm80({FLASHSCI_DTYPE_BFLOAT16,
                    {2, 129, 129, 4, 2, 64},
                    FLASHSCI_MASK_CAUSAL,
                    Layouts::contiguous,
                    deterministic},
                   Launch::graph, 3);
        BackwardCase c{
            FLASHSCI_DTYPE_FLOAT16, {0, 0, 0, 4, 2, 128}, FLASHSCI_MASK_NONE, Layouts::contiguous, deterministic};
        c.lens_q = {33, 0, 100}, c.lens_k = {40, 5, 77};
        check_sm80(c, Launch::graph, 3);
    }
}
