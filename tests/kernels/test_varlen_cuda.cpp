// Variable-length (packed) batches on the general CUDA path and on the Hopper path (sm90) against the CPU backend
// on the same fresh random inputs; select_kernel choosing the Hopper path for them; the pointer checks of the offsets; and hostile device
// offsets, which the CUDA backend cannot validate, staying inside O and LSE.
#include <limits>

#include "gpu_cases.h"
#include "varlen_gpu_cases.h"

namespace gpu = flashsci::test::gpu;
namespace vl = flashsci::test::varlen;
using flashsci::test::HostTensor;
using vl::check_case;
using vl::copy_to_device;
using vl::run_cuda;

namespace {

const gpu::Path kGeneral{"general", "cuda_general"};
const gpu::Path kSm90{"sm90", "sm90_"};
const gpu::Path kAutomaticSm90{"", "sm90_"};  // FLASHSCI_KERNEL empty: select_kernel's own choice

const std::vector<int64_t> kMixedQ{1, 17, 127, 129, 1000, 0, 40};
const std::vector<int64_t> kMixedK{17, 1, 129, 127, 1000, 5, 0};

vl::Case mixed(flashsci_dtype_t dtype, flashsci_mask_t mask, int64_t head_dim = 64) {
    vl::Case c;
    c.dtype = dtype, c.mask = mask, c.head_dim = head_dim;
    c.lens_q = kMixedQ, c.lens_k = kMixedK;
    c.spare_q = 3, c.spare_k = 2;
    c.max_extra_q = 70;  // more query tiles than the longest sequence needs: they exit
    return c;
}

// Packed QKV ([total, q heads + 2 kv heads, d] through strides) with padded output rows, causal, with and
// without LSE, with and without GQA.
void check_packed_qkv(const gpu::Path& path, flashsci_dtype_t dtype) {
    for (const auto& [heads_q, heads_kv] : {std::make_pair(4, 4), std::make_pair(8, 2)})
        for (const bool with_lse : {true, false}) {
            vl::Case c;
            c.dtype = dtype, c.mask = FLASHSCI_MASK_CAUSAL, c.storage = vl::Storage::packed_qkv;
            c.lens_q = c.lens_k = {33, 1, 0, 257, 5};
            c.heads_q = heads_q, c.heads_kv = heads_kv, c.head_dim = 64;
            c.spare_q = c.spare_k = 2;
            c.with_lse = with_lse;
            check_case(path, c);
        }
}

}  // namespace

TEST_CASE("general CUDA varlen: mixed lengths (1 to 1000, empty, keyless) under every mask and dtype",
          "[gpu][features][varlen]") {
    for (const flashsci_dtype_t dtype : gpu::kDtypes)
        for (const flashsci_mask_t mask : gpu::kMasks) check_case(kGeneral, mixed(dtype, mask));
}

// Every head-dim bucket of the general kernel (64, 128, 256) and a head_dim below its bucket.
TEST_CASE("general CUDA varlen: every head-dim bucket", "[gpu][features][varlen]") {
    for (const int64_t head_dim : {8, 40, 128, 256})
        for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32})
            check_case(kGeneral, mixed(dtype, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, head_dim));
}

TEST_CASE("general CUDA varlen: window, softcap and ALiBi per sequence, GQA, in a CUDA graph",
          "[gpu][features][varlen]") {
    const std::pair<int64_t, int64_t> windows[] = {{-1, -1}, {0, 0}, {16, -1}, {-1, 8}, {5, 3}};
    for (const flashsci_dtype_t dtype : gpu::kDtypes)
        for (const flashsci_mask_t mask : gpu::kMasks)
            for (const auto& [left, right] : windows) {
                vl::Case c;
                c.dtype = dtype, c.mask = mask;
                c.lens_q = {1, 17, 129, 300, 0, 64}, c.lens_k = {17, 1, 300, 129, 3, 64};
                c.heads_q = 6, c.heads_kv = 2, c.head_dim = 96;
                c.window_left = left, c.window_right = right;
                c.softcap = 5.0f;
                c.alibi_slopes = vl::alibi_slopes(c.heads_q);
                check_case(kGeneral, c, gpu::Launch::graph);
            }
}

TEST_CASE("general CUDA varlen: packed QKV strides, padded output rows, no LSE", "[gpu][features][varlen]") {
    for (const flashsci_dtype_t dtype : gpu::kDtypes) check_packed_qkv(kGeneral, dtype);
}

// bf16 at head_dim 128 takes the Hopper path on an H100, dense or varlen.
TEST_CASE("varlen: select_kernel picks the Hopper path", "[gpu][sm90][varlen][quick]") {
    if (!gpu::fast_path_available()) return;
    vl::Case c;
    c.dtype = FLASHSCI_DTYPE_BFLOAT16, c.mask = FLASHSCI_MASK_CAUSAL, c.head_dim = 128;
    c.heads_q = c.heads_kv = 4;
    c.lens_q = c.lens_k = {256, 100, 512};
    check_case(kAutomaticSm90, c);
}

TEST_CASE("sm90 varlen: mixed lengths (1 to 1000, empty, keyless), every mask, dtype and head dim",
          "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    for (const int64_t head_dim : gpu::kFastHeadDims)
        for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16})
            for (const flashsci_mask_t mask : gpu::kMasks) check_case(kSm90, mixed(dtype, mask, head_dim));
}

// Many tiles of one length, and a batch of more sequences than the grid has CTAs many times over (most of them
// a query tile with 0-3 keys): the tile counter must hand every tile out exactly once.
TEST_CASE("sm90 varlen: 40 equal lengths and 16385 tiny sequences", "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    vl::Case equal;
    equal.dtype = FLASHSCI_DTYPE_BFLOAT16, equal.mask = FLASHSCI_MASK_CAUSAL;
    equal.lens_q = equal.lens_k = std::vector<int64_t>(40, 100);
    check_case(kSm90, equal);
    constexpr int64_t kTinySequences = 16385;
    const uint64_t seed = gpu::fresh_seed();
    INFO("lengths from seed " << seed);
    std::mt19937_64 rng(seed);
    vl::Case many;
    many.dtype = FLASHSCI_DTYPE_FLOAT16, many.heads_q = many.heads_kv = 1;
    for (int64_t b = 0; b < kTinySequences; ++b) {
        many.lens_q.push_back(int64_t(rng() % 3) + 1);
        many.lens_k.push_back(int64_t(rng() % 4));
    }
    check_case(kSm90, many);
}

// Keys past a sequence's end are the next sequence's tokens, loaded into its last (masked) key block: a NaN
// there must not reach the sequence. Lengths are not multiples of any block width (80, 112, 128, 192).
TEST_CASE("sm90 varlen: a NaN in the next sequence's v stays out of this one", "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (const int64_t head_dim : gpu::kFastHeadDims)
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL}) {
            vl::Case c;
            c.dtype = FLASHSCI_DTYPE_FLOAT16, c.mask = mask, c.head_dim = head_dim;
            c.lens_q = c.lens_k = {150, 201};
            const auto [seed, pl, in] = random_inputs(c);
            INFO(vl::describe(c) << ", seed " << seed);
            const vl::Outputs clean = run_cuda(kSm90, c, pl, in);
            HostTensor dirty = in;
            for (int64_t token = 150; token < 160; ++token)  // sequence 1's first keys
                for (int64_t h = 0; h < c.heads_kv; ++h) dirty.set(pl.v.offset(0, token, h) + size_t(head_dim / 2), nan);
            const vl::Outputs out = run_cuda(kSm90, c, pl, dirty);
            int64_t changed = 0;
            for (int64_t row = 0; row < 150; ++row)
                for (int64_t h = 0; h < c.heads_q; ++h)
                    for (int64_t d = 0; d < head_dim; ++d) {
                        const size_t i = pl.o.offset(0, row, h) + size_t(d);
                        const double want = clean.o.get(i), got = out.o.get(i);
                        changed += !(std::isfinite(got) && std::abs(got - want) <= 1e-2 * (1 + std::abs(want)));
                    }
            CHECK(changed == 0);
        }
}

// Every sequence without keys (the first has len_k = 0 but len_q > 0), under a mask and without.
TEST_CASE("sm90 varlen: sequences without keys get O = 0 and LSE = -inf", "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
        vl::Case c;
        c.dtype = FLASHSCI_DTYPE_BFLOAT16, c.mask = mask, c.head_dim = 128;
        c.lens_q = {130, 5, 64}, c.lens_k = {0, 200, 0};
        check_case(kSm90, c);
    }
}

TEST_CASE("sm90 varlen: window, softcap and ALiBi per sequence, GQA, in a CUDA graph", "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    const std::pair<int64_t, int64_t> windows[] = {{-1, -1}, {0, 0}, {16, -1}, {-1, 8}, {5, 3}, {200, 130}};
    for (const int64_t head_dim : gpu::kFastHeadDims)
        for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16})
            for (const flashsci_mask_t mask : gpu::kMasks)
                for (const auto& [left, right] : windows)
                    for (const bool transform : {false, true}) {
                        vl::Case c;
                        c.dtype = dtype, c.mask = mask;
                        c.lens_q = {1, 17, 129, 300, 0, 64}, c.lens_k = {17, 1, 300, 129, 3, 64};
                        c.heads_q = 6, c.heads_kv = 2, c.head_dim = head_dim;
                        c.window_left = left, c.window_right = right;
                        if (transform) {
                            c.softcap = 5.0f;
                            c.alibi_slopes = vl::alibi_slopes(c.heads_q);
                        }
                        check_case(kSm90, c, gpu::Launch::graph);
                    }
}

TEST_CASE("sm90 varlen: packed QKV strides, padded output rows, no LSE", "[gpu][sm90][varlen]") {
    if (!gpu::fast_path_available()) return;
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16}) check_packed_qkv(kSm90, dtype);
}

TEST_CASE("CUDA varlen: offsets in host memory are refused, naming them, before anything is enqueued",
          "[gpu][varlen][quick]") {
    vl::Case c;
    c.lens_q = c.lens_k = {5, 7};
    const vl::Placement pl = vl::place(c);
    gpu::Plan plan(FLASHSCI_BACKEND_CUDA);
    vl::configure(plan, c, pl);
    const flashsci::test::VarlenOffsets cu = vl::offsets_of(c);
    gpu::DeviceBuffer d_in(pl.input_count * 4), d_o(pl.output_count * 4), d_cu(cu.q.size() * sizeof(int32_t));
    copy_to_device(d_cu, cu.q.data(), cu.q.size());
    REQUIRE_CUDA(cudaMemset(d_in.get(), 0, pl.input_count * 4));  // the last forward reads it (initcheck)
    REQUIRE_CUDA(cudaMemset(d_o.get(), 0xff, pl.output_count * 4));
    void* pinned_memory = nullptr;
    REQUIRE_CUDA(cudaMallocHost(&pinned_memory, cu.q.size() * sizeof(int32_t)));
    auto* pinned = static_cast<int32_t*>(pinned_memory);
    std::copy(cu.q.begin(), cu.q.end(), pinned);
    const auto* device_cu = reinterpret_cast<const int32_t*>(d_cu.get());
    const auto forward = [&](const int32_t* cu_q, const int32_t* cu_k) {
        return flashsci_forward_varlen(plan, d_in.get(), d_in.get() + pl.k.base * 4, d_in.get() + pl.v.base * 4,
                                       d_o.get(), nullptr, cu_q, cu_k, nullptr, 0, nullptr);
    };
    const flashsci_status_t host = forward(cu.q.data(), device_cu);
    const std::string host_message = flashsci_last_error();
    const flashsci_status_t page_locked = forward(device_cu, pinned);
    const std::string pinned_message = flashsci_last_error();
    const flashsci_status_t misaligned = forward(device_cu, reinterpret_cast<const int32_t*>(d_cu.get() + 2));
    const std::string misaligned_message = flashsci_last_error();
    cudaFreeHost(pinned);
    INFO(host_message << " | " << pinned_message << " | " << misaligned_message);
    CHECK(host == FLASHSCI_STATUS_INVALID_VALUE);
    CHECK(host_message.find("cu_seqlens_q") != std::string::npos);
    CHECK(host_message.find("not CUDA memory") != std::string::npos);
    CHECK(page_locked == FLASHSCI_STATUS_INVALID_VALUE);
    CHECK(pinned_message.find("cu_seqlens_k") != std::string::npos);
    CHECK(pinned_message.find("page-locked host memory") != std::string::npos);
    CHECK(misaligned == FLASHSCI_STATUS_INVALID_VALUE);
    CHECK(misaligned_message.find("cu_seqlens_k") != std::string::npos);
    REQUIRE_CUDA(cudaDeviceSynchronize());
    std::vector<unsigned char> o(pl.output_count * 4);
    REQUIRE_CUDA(cudaMemcpy(o.data(), d_o.get(), o.size(), cudaMemcpyDeviceToHost));
    CHECK(std::all_of(o.begin(), o.end(), [](unsigned char x) { return x == 0xff; }));
    REQUIRE_FLASHSCI(forward(device_cu, device_cu));  // and the same call with device offsets runs
    REQUIRE_CUDA(cudaDeviceSynchronize());
}

// The CUDA backend cannot read device offsets without synchronising, so it trusts them; whatever they hold,
// it must neither crash nor touch memory outside O and LSE (their values are then unspecified). O and LSE sit
// between poisoned guard bands in larger allocations, so a write past them shows here; q, k, v and the offsets
// have allocations of their exact size, so that compute-sanitizer (memcheck) reports any read past them. Run
// under `compute-sanitizer --tool memcheck` on the device machine too.
TEST_CASE("CUDA varlen: hostile device offsets stay inside O and LSE", "[gpu][varlen][hostile]") {
    constexpr int64_t kBatch = 4, kTotalQ = 300, kTotalK = 200, kMaxQ = 100, kMaxK = 64;
    constexpr int64_t kHeadsQ = 4, kHeadsKv = 2, kHeadDim = 64;
    constexpr size_t kGuard = 4096;  // bytes before and after each buffer
    constexpr int32_t kMin = std::numeric_limits<int32_t>::min(), kMax = std::numeric_limits<int32_t>::max();
    const std::vector<int32_t> valid_q{0, 100, 150, 150, 300}, valid_k{0, 64, 64, 130, 200};
    const std::pair<std::vector<int32_t>, std::vector<int32_t>> hostile[] = {
        {{0, 200, 50, 300, 10}, valid_k},                 // decreasing
        {{kMin, -5, kMax, 1000, 299}, valid_k},           // negative, huge
        {{0, 250, 400, 500, 600}, {0, 100, 250, 300, 400}},  // past total
        {{0, 300, 300, 300, 300}, {0, 200, 200, 200, 200}},  // longer than max
        {{7, 8, 9, 10, 11}, {kMax, kMax, kMax, kMax, kMax}},  // not starting at 0; all at INT32_MAX
        {valid_q, {0, -64, kMin, 130, 200}},
    };
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32})
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
            const size_t bytes = gpu::dtype_bytes(dtype);
            const size_t q_bytes = size_t(kTotalQ * kHeadsQ * kHeadDim) * bytes;
            const size_t kv_bytes = size_t(kTotalK * kHeadsKv * kHeadDim) * bytes;
            const size_t lse_bytes = size_t(kHeadsQ * kTotalQ) * sizeof(float);
            gpu::Plan plan(FLASHSCI_BACKEND_CUDA);
            REQUIRE_FLASHSCI(flashsci_plan_set_varlen_shape(plan, kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ,
                                                            kHeadsKv, kHeadDim));
            REQUIRE_FLASHSCI(flashsci_plan_set_dtype(plan, dtype));
            REQUIRE_FLASHSCI(flashsci_plan_set_mask(plan, mask));
            REQUIRE_FLASHSCI(flashsci_plan_set_window(plan, 40, -1));
            const std::vector<float> slopes = vl::alibi_slopes(kHeadsQ);
            REQUIRE_FLASHSCI(flashsci_plan_set_alibi_slopes(plan, slopes.data()));

            // q, k, v, cu_q, cu_k: allocations of their own size; [guard | o | guard], [guard | lse | guard]
            const size_t cu_bytes = size_t(kBatch + 1) * sizeof(int32_t);
            gpu::DeviceBuffer d_q(q_bytes), d_k(kv_bytes), d_v(kv_bytes), d_cu_q(cu_bytes), d_cu_k(cu_bytes),
                d_o(q_bytes + 2 * kGuard), d_lse(lse_bytes + 2 * kGuard);
            std::mt19937_64 rng(gpu::fresh_seed());
            for (const gpu::DeviceBuffer* input : {&d_q, &d_k, &d_v}) {
                HostTensor x(dtype, (input == &d_q ? q_bytes : kv_bytes) / bytes);
                x.fill_random(rng);
                REQUIRE_CUDA(cudaMemcpy(input->get(), x.data(), x.size_bytes(), cudaMemcpyHostToDevice));
            }
            auto* o = d_o.get() + kGuard;
            auto* lse = reinterpret_cast<float*>(d_lse.get() + kGuard);
            const auto* cu_q = reinterpret_cast<const int32_t*>(d_cu_q.get());
            const auto* cu_k = reinterpret_cast<const int32_t*>(d_cu_k.get());
            size_t workspace_bytes = 0;  // the Hopper path's tile counter
            REQUIRE_FLASHSCI(flashsci_plan_get_workspace_size(plan, &workspace_bytes));
            gpu::DeviceBuffer workspace(workspace_bytes);
            gpu::Stream stream;
            for (const auto& [offsets_q, offsets_k] : hostile) {
                INFO(gpu::dtype_name(dtype) << " mask " << vl::mask_label(mask) << ", cu_seqlens_q " << offsets_q[0]
                                            << " " << offsets_q[1] << " " << offsets_q[2] << " " << offsets_q[3] << " "
                                            << offsets_q[4] << ", cu_seqlens_k " << offsets_k[0] << " " << offsets_k[1]
                                            << " " << offsets_k[2] << " " << offsets_k[3] << " " << offsets_k[4]);
                REQUIRE_CUDA(cudaMemset(d_o.get(), 0xff, q_bytes + 2 * kGuard));
                REQUIRE_CUDA(cudaMemset(d_lse.get(), 0xff, lse_bytes + 2 * kGuard));
                REQUIRE_CUDA(cudaMemcpy(d_cu_q.get(), offsets_q.data(), cu_bytes, cudaMemcpyHostToDevice));
                REQUIRE_CUDA(cudaMemcpy(d_cu_k.get(), offsets_k.data(), cu_bytes, cudaMemcpyHostToDevice));
                REQUIRE_FLASHSCI(flashsci_forward_varlen(plan, d_q.get(), d_k.get(), d_v.get(), o, lse, cu_q, cu_k,
                                                         workspace.get(), workspace_bytes, stream.get()));
                REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
                REQUIRE_CUDA(cudaGetLastError());
                std::vector<unsigned char> o_host(q_bytes + 2 * kGuard), lse_host(lse_bytes + 2 * kGuard);
                REQUIRE_CUDA(cudaMemcpy(o_host.data(), d_o.get(), o_host.size(), cudaMemcpyDeviceToHost));
                REQUIRE_CUDA(cudaMemcpy(lse_host.data(), d_lse.get(), lse_host.size(), cudaMemcpyDeviceToHost));
                const auto guard_intact = [](const std::vector<unsigned char>& buffer, size_t inside) {
                    const auto poisoned = [](unsigned char x) { return x == 0xff; };
                    return std::all_of(buffer.begin(), buffer.begin() + kGuard, poisoned) &&
                           std::all_of(buffer.begin() + kGuard + inside, buffer.end(), poisoned);
                };
                CHECK(guard_intact(o_host, q_bytes));
                CHECK(guard_intact(lse_host, lse_bytes));
            }
            // The plan and the device still work: valid offsets give the CPU backend's result.
            vl::Case c;
            c.dtype = dtype, c.mask = mask, c.heads_q = kHeadsQ, c.heads_kv = kHeadsKv, c.head_dim = kHeadDim;
            c.window_left = 40, c.alibi_slopes = slopes;
            c.lens_q = {100, 50, 0, 150}, c.lens_k = {64, 0, 66, 70};
            REQUIRE(vl::totals_of(c).total_q == kTotalQ);
            check_case(kGeneral, c);
        }
}
