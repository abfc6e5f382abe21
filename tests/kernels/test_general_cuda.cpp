// The general CUDA path (forced with FLASHSCI_KERNEL=general) against the CPU backend on the same fresh random
// inputs, through the public API only: poisoned outputs, every element checked finite and close, LSE included.
#include "gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;

namespace {
const Path kGeneral{"general", "cuda_general"};
}  // namespace

TEST_CASE("general CUDA: every dtype and mask at odd seqlens matches the CPU backend", "[gpu]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t seqlen : {1, 17, 127, 128, 129, 1000})
            for (const flashsci_mask_t mask : kMasks) check_case(kGeneral, {dtype, {2, seqlen, seqlen, 2, 2, 64}, mask});
}

TEST_CASE("general CUDA: seqlen_q != seqlen_k under both causal alignments", "[gpu]") {
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1000}, {1000, 1}, {17, 129}, {129, 17},
                                                   {77, 300}, {300, 77}, {64, 200}, {200, 64}};
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_BFLOAT16})
        for (const auto& [seqlen_q, seqlen_k] : seqlens)
            for (const flashsci_mask_t mask : kMasks) check_case(kGeneral, {dtype, {2, seqlen_q, seqlen_k, 2, 2, 64}, mask});
}

TEST_CASE("general CUDA: GQA 4:1 and 8:1, MQA", "[gpu]") {
    const std::pair<int64_t, int64_t> heads[] = {{8, 2}, {16, 2}, {8, 1}, {5, 1}};
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_FLOAT32})
        for (const auto& [heads_q, heads_kv] : heads)
            for (const flashsci_mask_t mask : kMasks) check_case(kGeneral, {dtype, {2, 129, 200, heads_q, heads_kv, 64}, mask});
}

TEST_CASE("general CUDA: BHSD strides and a packed QKV tensor with padded output rows", "[gpu]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {72, 128})
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
                check_case(kGeneral, {dtype, {2, 100, 150, 4, 2, head_dim}, mask, Storage::bhsd});
                check_case(kGeneral, {dtype, {2, 129, 129, 4, 2, head_dim}, mask, Storage::packed_qkv});
            }
}

TEST_CASE("general CUDA: head dims 8 to 256", "[gpu]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {8, 24, 64, 72, 128, 160, 256})
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
                check_case(kGeneral, {dtype, {1, 130, 257, 2, 1, head_dim}, mask});
}

TEST_CASE("general CUDA: a custom softmax scale", "[gpu][quick]") {
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_BFLOAT16})
        for (const float scale : {0.05f, 0.6f})
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL})
                check_case(kGeneral, {dtype, {2, 200, 200, 2, 2, 96}, mask, Storage::bshd, scale});
}

TEST_CASE("general CUDA: batch·heads beyond 65535, and no LSE", "[gpu]") {
    check_case(kGeneral, {FLASHSCI_DTYPE_FLOAT16, {33000, 3, 5, 2, 1, 8}, FLASHSCI_MASK_CAUSAL});
    check_case(kGeneral, {FLASHSCI_DTYPE_FLOAT32, {2, 129, 129, 2, 2, 64}, FLASHSCI_MASK_CAUSAL, Storage::bshd, 0.0f, false});
}

TEST_CASE("general CUDA: a forward captured in a CUDA graph", "[gpu][quick]") {
    check_case(kGeneral, {FLASHSCI_DTYPE_BFLOAT16, {2, 129, 129, 4, 2, 64}, FLASHSCI_MASK_CAUSAL}, Launch::graph);
}

TEST_CASE("general CUDA: seqlen 131072 bf16 matches fp64 on sampled rows", "[gpu][long]") {
    constexpr int64_t kSeqlen = 131072;
    constexpr int64_t kHeadDim = 64;
    constexpr int kSampledRows = 64;
    const Case c{FLASHSCI_DTYPE_BFLOAT16, {1, kSeqlen, kSeqlen, 1, 1, kHeadDim}, FLASHSCI_MASK_NONE};
    const uint64_t seed = fresh_seed();
    INFO(describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Placement pl = place(c);
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    const Outputs gpu = run_cuda(kGeneral, c, pl, in);

    check_sampled_rows(c, pl, in, gpu, {0, kSeqlen - 1}, kSampledRows, rng);
}
