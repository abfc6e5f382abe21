// The general CUDA backward (forced with FLASHSCI_KERNEL=general) against the CPU backend's backward on the same
// fresh random inputs, with O and LSE from the CPU forward, through the public API only (tests/common/
// backward_cases.h): poisoned gradients, every element checked finite and close, rows that see no key (dq) and keys
// no row sees (dk, dv) exactly 0, padding and tokens outside every sequence never written; deterministic runs bitwise
// identical; a backward captured in a CUDA graph.
#include "backward_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;
using namespace flashsci::test::gpu::backward;

namespace {

constexpr const char* kForceGeneral = "general";

void check_general(const BackwardCase& c, Launch launch = Launch::stream, int runs = 1) {
    check_backward(c, kForceGeneral, launch, runs);
}

}  // namespace

TEST_CASE("CUDA backward: every dtype and mask at odd seqlens matches the CPU backend", "[gpu][backward]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t seqlen : {1, 17, 127, 129, 1000})
            for (const flashsci_mask_t mask : kMasks)
                for (const bool deterministic : {false, true})
                    check_general({dtype, {2, seqlen, seqlen, 2, 2, 64}, mask, Layouts::contiguous, deterministic});
}

TEST_CASE("CUDA backward: seqlen_q != seqlen_k under both causal alignments", "[gpu][backward]") {
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1000}, {1000, 1}, {17, 129}, {129, 17}, {77, 300}, {300, 77}};
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_BFLOAT16})
        for (const auto& [seqlen_q, seqlen_k] : seqlens)
            for (const flashsci_mask_t mask : kMasks) check_general({dtype, {2, seqlen_q, seqlen_k, 2, 2, 64}, mask});
}

TEST_CASE("CUDA backward: head dims 8 to 256 in every bucket", "[gpu][backward]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {8, 40, 64, 72, 128, 160, 256})
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
                check_general({dtype, {1, 130, 257, 2, 1, head_dim}, mask});
}

TEST_CASE("CUDA backward: GQA 4:1, MQA and 5:1 sum dk and dv over the group", "[gpu][backward]") {
    const std::pair<int64_t, int64_t> heads[] = {{8, 2}, {8, 1}, {5, 1}};
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_FLOAT32})
        for (const auto& [heads_q, heads_kv] : heads)
            for (const flashsci_mask_t mask : kMasks)
                for (const bool deterministic : {false, true})
                    check_general(
                        {dtype, {2, 129, 200, heads_q, heads_kv, 64}, mask, Layouts::contiguous, deterministic});
}

TEST_CASE("CUDA backward: windows, softcap and ALiBi", "[gpu][backward]") {
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_BFLOAT16})
        for (const flashsci_mask_t mask : kMasks) check_windows(dtype, mask, kForceGeneral);
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {40, 128, 256})
            check_general({dtype,
                            {1, 129, 100, 2, 1, head_dim},
                            FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                            Layouts::contiguous,
                            true,
                            30,
                            2,
                            2.0f,
                            true});
}

TEST_CASE("CUDA backward: BHSD and padded, misaligned strides on every tensor", "[gpu][backward]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {40, 128})
            for (const Layouts layouts : {Layouts::bhsd, Layouts::padded})
                for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL})
                    check_general({dtype, {2, 100, 150, 4, 2, head_dim}, mask, layouts});
}

TEST_CASE("CUDA backward: varlen batches with empty sequences", "[gpu][backward]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const Layouts layouts : {Layouts::contiguous, Layouts::padded})
                check_empty_sequences({dtype, {0, 0, 0, 4, 2, 64}, mask, layouts}, kForceGeneral);
}

TEST_CASE("CUDA backward: deterministic runs are bitwise identical", "[gpu][backward]") {
    check_general({FLASHSCI_DTYPE_BFLOAT16,
                    {2, 300, 500, 8, 2, 128},
                    FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                    Layouts::contiguous,
                    true},
                   Launch::stream, kDeterministicRuns);
    check_general({FLASHSCI_DTYPE_FLOAT32, {1, 1000, 1000, 1, 1, 64}, FLASHSCI_MASK_NONE, Layouts::contiguous, true},
                   Launch::stream, kDeterministicRuns);
    BackwardCase c{FLASHSCI_DTYPE_FLOAT16, {0, 0, 0, 6, 3, 96}, FLASHSCI_MASK_CAUSAL, Layouts::padded, true};
    c.lens_q = {300, 0, 77}, c.lens_k = {280, 9, 400};
    check_general(c, Launch::stream, kDeterministicRuns);
}

// Small enough for the slower compute-sanitizer tools, which run the [quick] tests.
TEST_CASE("CUDA backward: every feature at once on a small problem", "[gpu][backward][quick]") {
    for (const bool deterministic : {false, true}) {
        check_general({FLASHSCI_DTYPE_BFLOAT16, {2, 70, 90, 4, 2, 40}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
                        Layouts::padded, deterministic, 20, 5, 3.0f, true});
        check_general({FLASHSCI_DTYPE_FLOAT32, {1, 33, 20, 3, 1, 256}, FLASHSCI_MASK_CAUSAL, Layouts::bhsd,
                        deterministic, -1, -1, 0.0f, true});
        check_general({FLASHSCI_DTYPE_FLOAT16, {1, 20, 40, 2, 2, 128}, FLASHSCI_MASK_NONE, Layouts::contiguous,
                        deterministic, 4, 4});
    }
}

TEST_CASE("CUDA backward: captured in a CUDA graph and replayed", "[gpu][backward][quick]") {
    for (const bool deterministic : {false, true}) {
        check_general({FLASHSCI_DTYPE_BFLOAT16,
                        {2, 129, 129, 4, 2, 64},
                        FLASHSCI_MASK_CAUSAL,
                        Layouts::contiguous,
                        deterministic},
                       Launch::graph, 3);
        BackwardCase c{
            FLASHSCI_DTYPE_FLOAT32, {0, 0, 0, 4, 2, 64}, FLASHSCI_MASK_NONE, Layouts::contiguous, deterministic};
        c.lens_q = {33, 0, 100}, c.lens_k = {40, 5, 77};
        check_general(c, Launch::graph, 3);
    }
}
