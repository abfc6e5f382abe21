// The sm_80 forward (forced with FLASHSCI_KERNEL=sm80) against the CPU backend on the same fresh random inputs:
// every head-dim bucket (and head dims padded inside one), fp16, bf16 and fp32 (3xTF32, the default precision, held
// to the fp32 tolerance of gpu_cases.h), odd and unequal seqlens, every mask,
// window, softcap and ALiBi, GQA/MQA, strided layouts, varlen batches, graphs; and select_kernel()'s choice of it.
// Each check names its case (and seed) when it fails.
#include "feature_cases.h"
#include "gpu_cases.h"
#include "varlen_gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;
namespace vl = flashsci::test::varlen;

namespace {

const Path kSm80{"sm80", "sm80_"};
// fp32 runs at the plan's default precision (fp32-level: 3xTF32).
constexpr flashsci_dtype_t kAllDtypes[] = {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_FLOAT32};
// The buckets (64, 128, 256) and head dims padded inside them (8, 40 and 72, 96, 136, 200).
constexpr int64_t kHeadDims[] = {8, 40, 64, 72, 96, 128, 136, 200, 256};
constexpr int64_t kBuckets[] = {64, 128, 256};

// The kernel a CUDA plan of case c selects (FLASHSCI_KERNEL as `force`), or the failure's status.
std::string selected_kernel(const char* force, const Case& c, flashsci_status_t* status = nullptr) {
    const ScopedEnvironment forced("FLASHSCI_KERNEL", force);
    Plan plan(FLASHSCI_BACKEND_CUDA);
    configure(plan, c, place(c));
    const char* kernel = nullptr;
    const flashsci_status_t s = flashsci_plan_get_kernel_name(plan, &kernel);
    if (status != nullptr) *status = s;
    return s == FLASHSCI_STATUS_SUCCESS ? std::string(kernel) : std::string();
}

bool is_hopper() {
    int device = 0, major = 0, minor = 0;
    REQUIRE_CUDA(cudaGetDevice(&device));
    REQUIRE_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    REQUIRE_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major == 9 && minor == 0;
}

}  // namespace

TEST_CASE("sm80: every head dim, dtype and mask at odd seqlens matches the CPU backend", "[gpu][sm80]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kHeadDims)
        for (const flashsci_dtype_t dtype : kAllDtypes)
            for (const int64_t seqlen : {1, 17, 127, 129, 1000})
                for (const flashsci_mask_t mask : kMasks)
                    check_case(kSm80, {dtype, {2, seqlen, seqlen, 2, 2, head_dim}, mask});
}

TEST_CASE("sm80: seqlen_q != seqlen_k under both causal alignments, every bucket", "[gpu][sm80]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 1000}, {1000, 1}, {17, 129}, {129, 17}, {300, 777},
                                                   {777, 300}, {64, 200}, {200, 64}, {128, 129}, {129, 128}};
    for (const int64_t head_dim : kBuckets)
        for (const flashsci_dtype_t dtype : kAllDtypes)
            for (const auto& [seqlen_q, seqlen_k] : seqlens)
                for (const flashsci_mask_t mask : kMasks)
                    check_case(kSm80, {dtype, {2, seqlen_q, seqlen_k, 2, 2, head_dim}, mask});
}

TEST_CASE("sm80: seqlen 4097, the first length past a long run of full tiles", "[gpu][sm80]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kBuckets)
        for (const flashsci_mask_t mask : kMasks) {
            check_case(kSm80, {FLASHSCI_DTYPE_BFLOAT16, {1, 4097, 4097, 2, 1, head_dim}, mask});
            check_case(kSm80, {FLASHSCI_DTYPE_FLOAT16, {1, 333, 4097, 2, 1, head_dim}, mask});
            check_case(kSm80, {FLASHSCI_DTYPE_FLOAT32, {1, 4097, 777, 2, 1, head_dim}, mask});
        }
}

TEST_CASE("sm80: GQA 4:1 and 8:1, MQA, heads not a power of two", "[gpu][sm80]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> heads[] = {{8, 2}, {16, 2}, {8, 1}, {5, 1}, {6, 3}};
    for (const int64_t head_dim : kBuckets)
        for (const auto& [heads_q, heads_kv] : heads)
            for (const flashsci_mask_t mask : kMasks) {
                check_case(kSm80, {FLASHSCI_DTYPE_FLOAT16, {2, 129, 200, heads_q, heads_kv, head_dim}, mask});
                check_case(kSm80, {FLASHSCI_DTYPE_FLOAT32, {2, 129, 200, heads_q, heads_kv, head_dim}, mask});
            }
}

TEST_CASE("sm80: BHSD strides, packed QKV with padded output rows, a custom scale, no LSE", "[gpu][sm80]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : {64, 72, 128, 256})
        for (const flashsci_dtype_t dtype : kAllDtypes)
            for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
                check_case(kSm80, {dtype, {2, 100, 150, 4, 2, head_dim}, mask, Storage::bhsd});
                check_case(kSm80, {dtype, {2, 129, 129, 4, 2, head_dim}, mask, Storage::packed_qkv});
                check_case(kSm80, {dtype, {1, 300, 300, 2, 2, head_dim}, mask, Storage::bshd, 0.3f, false});
                check_case(kSm80, {dtype, {2, 200, 200, 2, 2, head_dim}, mask, Storage::bshd, 0.05f});
            }
}

TEST_CASE("sm80: batch·heads beyond 65535 work items", "[gpu][sm80]") {
    if (!sm80_available()) return;
    check_case(kSm80, {FLASHSCI_DTYPE_FLOAT16, {33000, 3, 5, 2, 1, 8}, FLASHSCI_MASK_CAUSAL});
}

TEST_CASE("sm80: sliding windows under every mask at odd seqlens", "[gpu][sm80][features]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> seqlens[] = {{1, 17}, {17, 1}, {17, 129}, {129, 300}, {300, 129}, {1000, 1000}};
    for (const flashsci_dtype_t dtype : kAllDtypes)
        for (const auto& [seqlen_q, seqlen_k] : seqlens)
            for (const flashsci_mask_t mask : kMasks)
                for (const auto& window : kWindows)
                    check_case(kSm80, windowed(dtype, {2, seqlen_q, seqlen_k, 4, 2, 64}, mask, window));
}

// Windows far narrower than seqlen: most key tiles are skipped, and the band's edges cross tiles at every bucket.
TEST_CASE("sm80: narrow windows over long sequences skip key tiles", "[gpu][sm80][features]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : {40, 128, 256})
        for (const flashsci_mask_t mask : kMasks) {
            check_case(kSm80, windowed(FLASHSCI_DTYPE_BFLOAT16, {1, 2000, 3001, 2, 1, head_dim}, mask, {255, 100}));
            check_case(kSm80, windowed(FLASHSCI_DTYPE_FLOAT16, {1, 3001, 2000, 2, 1, head_dim}, mask, {0, 63}));
            check_case(kSm80, windowed(FLASHSCI_DTYPE_FLOAT32, {1, 2000, 3001, 2, 1, head_dim}, mask, {17, 300}));
        }
}

TEST_CASE("sm80: softcap and ALiBi, alone and together with a window", "[gpu][sm80][features]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : kBuckets)
        for (const flashsci_dtype_t dtype : kAllDtypes)
            for (const flashsci_mask_t mask : kMasks) {
                for (const float softcap : {1.0f, kSoftcap, 50.0f}) {
                    Case c{dtype, {2, 129, 300, 4, 2, head_dim}, mask};
                    c.softcap = softcap;
                    check_case(kSm80, c);
                }
                for (const auto& [seqlen_q, seqlen_k] : {std::pair<int64_t, int64_t>{300, 129}, {129, 300}, {1, 17}}) {
                    Case c{dtype, {2, seqlen_q, seqlen_k, 8, 2, head_dim}, mask};
                    c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                    check_case(kSm80, c);
                }
                for (const auto& window : kWindows) {
                    Case c = windowed(dtype, {2, 129, 300, 6, 2, head_dim}, mask, window);
                    c.storage = Storage::bhsd;
                    c.softcap = kSoftcap;
                    c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                    check_case(kSm80, c);
                }
            }
}

TEST_CASE("sm80: forwards captured in a CUDA graph, banded (redo flags in the workspace) and not", "[gpu][sm80]") {
    if (!sm80_available()) return;
    for (const flashsci_mask_t mask : kMasks)
        check_case(kSm80, {FLASHSCI_DTYPE_BFLOAT16, {2, 1000, 1000, 4, 2, 128}, mask}, Launch::graph);
    check_case(kSm80, windowed(FLASHSCI_DTYPE_FLOAT16, {2, 300, 300, 4, 2, 64}, FLASHSCI_MASK_NONE, {16, 8}),
               Launch::graph);
    check_case(kSm80, {FLASHSCI_DTYPE_FLOAT32, {2, 300, 300, 4, 2, 256}, FLASHSCI_MASK_CAUSAL}, Launch::graph);
}

TEST_CASE("sm80 varlen: mixed lengths (1 to 1000, empty, keyless) under every mask, every bucket",
          "[gpu][sm80][varlen]") {
    if (!sm80_available()) return;
    for (const int64_t head_dim : {40, 64, 128, 256})
        for (const flashsci_dtype_t dtype : kAllDtypes)
            for (const flashsci_mask_t mask : kMasks) {
                vl::Case c;
                c.dtype = dtype, c.mask = mask, c.head_dim = head_dim;
                c.lens_q = {1, 17, 127, 129, 1000, 0, 40}, c.lens_k = {17, 1, 129, 127, 1000, 5, 0};
                c.spare_q = 3, c.spare_k = 2;
                c.max_extra_q = 70;  // more query tiles than the longest sequence needs: they exit
                vl::check_case(kSm80, c);
            }
}

TEST_CASE("sm80 varlen: window, softcap and ALiBi per sequence, GQA, packed QKV, in a CUDA graph",
          "[gpu][sm80][varlen]") {
    if (!sm80_available()) return;
    const std::pair<int64_t, int64_t> windows[] = {{-1, -1}, {0, 0}, {16, -1}, {-1, 8}, {5, 3}};
    for (const flashsci_dtype_t dtype : kAllDtypes)
        for (const flashsci_mask_t mask : kMasks) {
            for (const auto& [left, right] : windows) {
                vl::Case c;
                c.dtype = dtype, c.mask = mask;
                c.lens_q = {1, 17, 129, 300, 0, 64}, c.lens_k = {17, 1, 300, 129, 3, 64};
                c.heads_q = 6, c.heads_kv = 2, c.head_dim = 96;
                c.window_left = left, c.window_right = right;
                c.softcap = 5.0f;
                c.alibi_slopes = vl::alibi_slopes(c.heads_q);
                vl::check_case(kSm80, c, Launch::graph);
            }
            for (const bool with_lse : {true, false}) {
                vl::Case c;
                c.dtype = dtype, c.mask = mask, c.storage = vl::Storage::packed_qkv;
                c.lens_q = c.lens_k = {33, 1, 0, 257, 5};
                c.heads_q = 8, c.heads_kv = 2, c.head_dim = 64;
                c.spare_q = c.spare_k = 2;
                c.with_lse = with_lse;
                vl::check_case(kSm80, c);
            }
        }
}

TEST_CASE("sm80: select_kernel takes it where it runs and the Hopper and general paths keep theirs", "[gpu][sm80]") {
    if (!sm80_available()) return;
    const bool hopper = is_hopper() && fast_path_available();
    // fp16/bf16 at a head dim the Hopper path has: Hopper's there, the sm_80 forward elsewhere.
    const Case hd128{FLASHSCI_DTYPE_BFLOAT16, {2, 257, 257, 2, 2, 128}, FLASHSCI_MASK_CAUSAL};
    CHECK(selected_kernel("", hd128).rfind(hopper ? "sm90_" : "sm80_hd128_bf16", 0) == 0);
    // A head dim only the sm_80 forward has (a padded bucket): everywhere.
    const Case hd80{FLASHSCI_DTYPE_FLOAT16, {2, 257, 257, 2, 2, 80}, FLASHSCI_MASK_CAUSAL};
    CHECK(selected_kernel("", hd80) == "sm80_hd128_f16");
    check_case({"", "sm80_hd128_f16"}, hd80);
    const Case hd40{FLASHSCI_DTYPE_BFLOAT16, {1, 129, 300, 2, 1, 40}};
    CHECK(selected_kernel("", hd40) == "sm80_hd64_bf16");
    const Case hd200{FLASHSCI_DTYPE_BFLOAT16, {1, 129, 300, 2, 1, 200}};
    CHECK(selected_kernel("", hd200) == "sm80_hd256_bf16");
    // fp32 at the default precision: 3xTF32 here (the Hopper path has no fp32); forced general: the general kernel.
    const Case fp32{FLASHSCI_DTYPE_FLOAT32, {2, 257, 257, 2, 2, 128}};
    CHECK(selected_kernel("", fp32) == "sm80_hd128_f32_3xtf32");
    CHECK(selected_kernel("general", hd80) == "cuda_general");
    CHECK(selected_kernel("general", fp32) == "cuda_general");
    // Decoding shapes keep the decoding kernel.
    const Case decode{FLASHSCI_DTYPE_BFLOAT16, {4, 1, 4096, 32, 8, 128}};
    CHECK(selected_kernel("", decode).rfind("cuda_decode_", 0) == 0);
}

// Query rows padded by 4 elements (8 bytes: rows not 16-byte aligned) leave the tensor-core paths to the general
// kernel; forced, the sm_80 forward refuses them.
TEST_CASE("sm80: rows that are not 16-byte aligned run on the general path", "[gpu][sm80]") {
    if (!sm80_available()) return;
    constexpr int64_t kPad = 4;
    const Case c{FLASHSCI_DTYPE_BFLOAT16, {2, 129, 129, 4, 2, 128}, FLASHSCI_MASK_CAUSAL};
    const Shape& s = c.shape;
    for (const char* force : {"", "sm80"}) {
        const ScopedEnvironment forced("FLASHSCI_KERNEL", force);
        Plan plan(FLASHSCI_BACKEND_CUDA);
        configure(plan, c, place(c));
        const int64_t seq_stride = s.heads_q * s.head_dim + kPad;
        REQUIRE_FLASHSCI(flashsci_plan_set_strides(plan, FLASHSCI_TENSOR_Q, s.seqlen_q * seq_stride, seq_stride, s.head_dim));
        const char* kernel = nullptr;
        const flashsci_status_t status = flashsci_plan_get_kernel_name(plan, &kernel);
        INFO("FLASHSCI_KERNEL=" << force << ": " << flashsci_last_error());
        if (std::string(force).empty()) {
            REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
            CHECK(std::string(kernel) == "cuda_general");
        } else {  // forced onto a problem it cannot run: NOT_SUPPORTED, naming what it needs
            CHECK(status == FLASHSCI_STATUS_NOT_SUPPORTED);
            CHECK(std::string(flashsci_last_error()).find("FLASHSCI_KERNEL=sm80") != std::string::npos);
            CHECK(std::string(flashsci_last_error()).find("16-byte aligned") != std::string::npos);
        }
    }
}
