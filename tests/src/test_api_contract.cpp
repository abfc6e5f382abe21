// The C ABI's contract: every bad argument gets the right status and a message naming it,
// and a failing call writes nothing.
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tensors.h"

using flashsci::test::HostTensor;

namespace {

constexpr int64_t kBatch = 2, kSeqQ = 5, kSeqK = 7, kHeadsQ = 4, kHeadsKv = 2, kHeadDim = 16;

std::string last_error() { return flashsci_last_error(); }

// A CPU plan with a small valid problem, and poisoned outputs to prove a failing call wrote nothing.
struct CpuFixture {
    flashsci_plan_t plan = nullptr;
    HostTensor q{FLASHSCI_DTYPE_FLOAT32, size_t(kBatch * kSeqQ * kHeadsQ * kHeadDim)};
    HostTensor k{FLASHSCI_DTYPE_FLOAT32, size_t(kBatch * kSeqK * kHeadsKv * kHeadDim)};
    HostTensor v{FLASHSCI_DTYPE_FLOAT32, size_t(kBatch * kSeqK * kHeadsKv * kHeadDim)};
    HostTensor o{FLASHSCI_DTYPE_FLOAT32, size_t(kBatch * kSeqQ * kHeadsQ * kHeadDim)};
    HostTensor lse{FLASHSCI_DTYPE_FLOAT32, size_t(kBatch * kHeadsQ * kSeqQ)};

    CpuFixture() {
        std::mt19937_64 rng(flashsci::test::fresh_seed());
        q.fill_random(rng), k.fill_random(rng), v.fill_random(rng);
        o.poison(), lse.poison();
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    }
    ~CpuFixture() { flashsci_plan_destroy(plan); }

    void set_valid_problem() {
        REQUIRE(flashsci_plan_set_shape(plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
                FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32) == FLASHSCI_STATUS_SUCCESS);
    }

    flashsci_status_t forward(flashsci_stream_t stream = nullptr) {
        return flashsci_forward(plan, q.data(), k.data(), v.data(), o.data(), lse_data(), nullptr, 0, stream);
    }
    float* lse_data() { return static_cast<float*>(lse.data()); }

    void require_outputs_untouched() {
        CHECK(o.is_poisoned());
        CHECK(lse.is_poisoned());
    }
};

void require_failure(flashsci_status_t got, flashsci_status_t expected, const std::string& fragment) {
    CHECK(got == expected);
    INFO("message: " << last_error());
    CHECK(last_error().find(fragment) != std::string::npos);
}

}  // namespace

TEST_CASE("version functions agree with the header", "[api]") {
    CHECK(flashsci_version() == FLASHSCI_VERSION);
    const std::string expected = std::to_string(FLASHSCI_VERSION_MAJOR) + "." +
                                 std::to_string(FLASHSCI_VERSION_MINOR) + "." + std::to_string(FLASHSCI_VERSION_PATCH);
    CHECK(flashsci_version_string() == expected);
}

TEST_CASE("every status has a string, unknown values too", "[api]") {
    for (int s = FLASHSCI_STATUS_SUCCESS; s <= FLASHSCI_STATUS_INTERNAL_ERROR; ++s) {
        const char* text = flashsci_status_string(static_cast<flashsci_status_t>(s));
        REQUIRE(text != nullptr);
        CHECK(std::string(text) != "unknown status");
    }
    CHECK(std::string(flashsci_status_string(static_cast<flashsci_status_t>(99))) == "unknown status");
    CHECK(std::string(flashsci_status_string(static_cast<flashsci_status_t>(-1))) == "unknown status");
}

TEST_CASE("the last error is per thread and empty before any failure", "[api]") {
    std::string fresh_thread_message = "unset";
    std::thread([&] { fresh_thread_message = flashsci_last_error(); }).join();
    CHECK(fresh_thread_message.empty());

    REQUIRE(flashsci_plan_create(nullptr, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_INVALID_VALUE);
    std::string other_thread_message = "unset";
    std::thread([&] { other_thread_message = flashsci_last_error(); }).join();
    CHECK(other_thread_message.empty());
    CHECK(last_error() == "flashsci_plan_create: plan must not be NULL");
}

TEST_CASE("plan creation validates its arguments", "[api]") {
    require_failure(flashsci_plan_create(nullptr, FLASHSCI_BACKEND_CPU), FLASHSCI_STATUS_INVALID_VALUE, "plan");

    flashsci_plan_t untouched = reinterpret_cast<flashsci_plan_t>(uintptr_t(0x1234));
    require_failure(flashsci_plan_create(&untouched, static_cast<flashsci_backend_t>(7)),
                    FLASHSCI_STATUS_INVALID_VALUE, "backend (7)");
    CHECK(untouched == reinterpret_cast<flashsci_plan_t>(uintptr_t(0x1234)));

    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_AUTO) == FLASHSCI_STATUS_SUCCESS);
    flashsci_backend_t backend = FLASHSCI_BACKEND_AUTO;
    REQUIRE(flashsci_plan_get_backend(plan, &backend) == FLASHSCI_STATUS_SUCCESS);
    CHECK((backend == FLASHSCI_BACKEND_CPU || backend == FLASHSCI_BACKEND_CUDA));
    require_failure(flashsci_plan_get_backend(plan, nullptr), FLASHSCI_STATUS_INVALID_VALUE, "backend");
    require_failure(flashsci_plan_get_backend(nullptr, &backend), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    flashsci_plan_destroy(plan);

    // CUDA either works or says plainly that no device is usable.
    flashsci_plan_t cuda = nullptr;
    flashsci_status_t status = flashsci_plan_create(&cuda, FLASHSCI_BACKEND_CUDA);
    if (status == FLASHSCI_STATUS_SUCCESS) {
        REQUIRE(flashsci_plan_get_backend(cuda, &backend) == FLASHSCI_STATUS_SUCCESS);
        CHECK(backend == FLASHSCI_BACKEND_CUDA);
        flashsci_plan_destroy(cuda);
    } else {
        require_failure(status, FLASHSCI_STATUS_NO_DEVICE, "flashsci_plan_create");
        CHECK(cuda == nullptr);
        // And AUTO then falls back to the CPU.
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_AUTO) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_get_backend(plan, &backend) == FLASHSCI_STATUS_SUCCESS);
        CHECK(backend == FLASHSCI_BACKEND_CPU);
        flashsci_plan_destroy(plan);
    }
    CHECK(flashsci_plan_destroy(nullptr) == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("set_shape rejects each bad argument and keeps the old shape", "[api]") {
    CpuFixture f;
    f.set_valid_problem();
    const int64_t huge = std::numeric_limits<int64_t>::max() / 2;
    struct Case {
        int64_t b, sq, sk, hq, hkv, d;
        const char* message;
    } cases[] = {
        {0, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim, "batch (0) must be at least 1"},
        {-3, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim, "batch (-3) must be at least 1"},
        {kBatch, 0, kSeqK, kHeadsQ, kHeadsKv, kHeadDim, "seqlen_q (0) must be at least 1"},
        {kBatch, kSeqQ, -1, kHeadsQ, kHeadsKv, kHeadDim, "seqlen_k (-1) must be at least 1"},
        {kBatch, kSeqQ, kSeqK, 0, kHeadsKv, kHeadDim, "heads_q (0) must be at least 1"},
        {kBatch, kSeqQ, kSeqK, kHeadsQ, 0, kHeadDim, "heads_kv (0) must be at least 1"},
        {kBatch, kSeqQ, kSeqK, 12, 5, kHeadDim,
         "flashsci_plan_set_shape: heads_q (12) must be a multiple of heads_kv (5)"},
        {kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, 0, "head_dim (0) must be a multiple of 8 from 8 to 256"},
        {kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, 12, "head_dim (12)"},
        {kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, 264, "head_dim (264)"},
        {huge, huge, kSeqK, kHeadsQ, kHeadsKv, kHeadDim, "overflows"},
        {kBatch, kSeqQ, huge, kHeadsQ, kHeadsKv, 256, "overflows"},
    };
    for (const Case& c : cases) {
        INFO(c.message);
        require_failure(flashsci_plan_set_shape(f.plan, c.b, c.sq, c.sk, c.hq, c.hkv, c.d),
                        FLASHSCI_STATUS_INVALID_VALUE, c.message);
    }
    require_failure(flashsci_plan_set_shape(nullptr, 1, 1, 1, 1, 1, 8), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    // The earlier, valid shape still holds: the buffers sized for it are filled.
    REQUIRE(f.forward() == FLASHSCI_STATUS_SUCCESS);
    for (size_t i = 0; i < f.o.count(); ++i) REQUIRE(std::isfinite(f.o.get(i)));
}

TEST_CASE("dtype, mask and scale setters reject values outside their ranges", "[api]") {
    CpuFixture f;
    for (int bad : {0, 4, -1})
        require_failure(flashsci_plan_set_dtype(f.plan, static_cast<flashsci_dtype_t>(bad)),
                        FLASHSCI_STATUS_INVALID_VALUE, "dtype (" + std::to_string(bad) + ")");
    for (int bad : {3, -1})
        require_failure(flashsci_plan_set_mask(f.plan, static_cast<flashsci_mask_t>(bad)),
                        FLASHSCI_STATUS_INVALID_VALUE, "mask (" + std::to_string(bad) + ")");
    for (float bad : {0.0f, -0.5f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
        require_failure(flashsci_plan_set_softmax_scale(f.plan, bad), FLASHSCI_STATUS_INVALID_VALUE,
                        "must be finite and positive");
    require_failure(flashsci_plan_set_dtype(nullptr, FLASHSCI_DTYPE_FLOAT16), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    require_failure(flashsci_plan_set_mask(nullptr, FLASHSCI_MASK_NONE), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    require_failure(flashsci_plan_set_softmax_scale(nullptr, 1.0f), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    CHECK(flashsci_plan_set_mask(f.plan, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_softmax_scale(f.plan, 0.125f) == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("window, softcap and ALiBi setters reject bad values and name them", "[api]") {
    CpuFixture f;
    require_failure(flashsci_plan_set_window(f.plan, -2, 0), FLASHSCI_STATUS_INVALID_VALUE,
                    "window_left (-2) must be -1 (unbounded) or at least 0");
    require_failure(flashsci_plan_set_window(f.plan, 3, std::numeric_limits<int64_t>::min()),
                    FLASHSCI_STATUS_INVALID_VALUE, "window_right (");
    require_failure(flashsci_plan_set_window(nullptr, 0, 0), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    for (float bad : {-1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
        require_failure(flashsci_plan_set_softcap(f.plan, bad), FLASHSCI_STATUS_INVALID_VALUE,
                        "softcap (" + std::string(std::isnan(bad) ? "nan" : bad < 0 ? "-1" : "inf") + ")");
    require_failure(flashsci_plan_set_softcap(nullptr, 1.0f), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    const std::vector<float> slopes(size_t(kHeadsQ), 0.5f);
    require_failure(flashsci_plan_set_alibi_slopes(f.plan, slopes.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_shape first");
    require_failure(flashsci_plan_set_alibi_slopes(nullptr, slopes.data()), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    f.set_valid_problem();
    std::vector<float> bad_slopes = slopes;
    bad_slopes[2] = std::numeric_limits<float>::quiet_NaN();
    require_failure(flashsci_plan_set_alibi_slopes(f.plan, bad_slopes.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "slopes[2] (nan) must be finite");
    CHECK(flashsci_plan_set_window(f.plan, -1, 0) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_window(f.plan, std::numeric_limits<int64_t>::max(), 0) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_softcap(f.plan, 0.0f) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_softcap(f.plan, 30.0f) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_alibi_slopes(f.plan, slopes.data()) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_alibi_slopes(f.plan, nullptr) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(f.forward() == FLASHSCI_STATUS_SUCCESS);
}

// A large slope makes the bias dominate, so whether ALiBi is on shows in O: row i then attends to its diagonal key.
TEST_CASE("set_shape with another heads_q turns ALiBi off, the same heads_q keeps it", "[api]") {
    constexpr float kDominantSlope = 1e4f;
    const std::vector<float> slopes(size_t(kHeadsQ), kDominantSlope);
    auto run = [](CpuFixture& f) {
        REQUIRE(f.forward() == FLASHSCI_STATUS_SUCCESS);
        return std::vector<float>(static_cast<const float*>(f.o.data()),
                                  static_cast<const float*>(f.o.data()) + f.o.count());
    };
    CpuFixture plain, biased;
    plain.set_valid_problem();
    biased.set_valid_problem();
    biased.q = plain.q, biased.k = plain.k, biased.v = plain.v;
    const std::vector<float> without = run(plain);
    REQUIRE(flashsci_plan_set_alibi_slopes(biased.plan, slopes.data()) == FLASHSCI_STATUS_SUCCESS);
    CHECK(run(biased) != without);
    REQUIRE(flashsci_plan_set_shape(biased.plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    CHECK(run(biased) != without);
    REQUIRE(flashsci_plan_set_shape(biased.plan, kBatch, kSeqQ, kSeqK, kHeadsKv, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_shape(biased.plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    CHECK(run(biased) == without);
}

TEST_CASE("set_strides validates tensor, order, sign, overflow and output overlap", "[api]") {
    CpuFixture f;
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_Q, 1, 1, 1), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_shape before setting strides");
    f.set_valid_problem();
    require_failure(flashsci_plan_set_strides(f.plan, static_cast<flashsci_tensor_t>(8), 1, 1, 1),
                    FLASHSCI_STATUS_INVALID_VALUE, "tensor (8)");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_K, -1, 16, 16), FLASHSCI_STATUS_INVALID_VALUE,
                    "batch_stride of k (-1) must be at least 0");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_V, 1, -16, 16), FLASHSCI_STATUS_INVALID_VALUE,
                    "seq_stride of v (-16)");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_Q, 1, 16, -2), FLASHSCI_STATUS_INVALID_VALUE,
                    "head_stride of q (-2)");
    const int64_t huge = std::numeric_limits<int64_t>::max() / 2;
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_Q, huge, huge, 16), FLASHSCI_STATUS_INVALID_VALUE,
                    "overflow");
    // Two rows of o at one address would make the result depend on write order.
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_O, kSeqQ * kHeadsQ * kHeadDim, 0, kHeadDim),
                    FLASHSCI_STATUS_INVALID_VALUE, "overlap");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_O, kSeqQ * kHeadsQ * kHeadDim,
                                              kHeadsQ * kHeadDim, kHeadDim / 2),
                    FLASHSCI_STATUS_INVALID_VALUE, "overlap");
    // Inputs may broadcast (stride 0), and a valid BHSD layout is accepted.
    CHECK(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_K, 0, kHeadsKv * kHeadDim, kHeadDim) ==
          FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_O, kHeadsQ * kSeqQ * kHeadDim, kHeadDim,
                                    kSeqQ * kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_set_strides(nullptr, FLASHSCI_TENSOR_Q, 1, 1, 1), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan");
}

TEST_CASE("workspace size and kernel name need shape and dtype", "[api]") {
    CpuFixture f;
    size_t bytes = 123;
    const char* name = nullptr;
    require_failure(flashsci_plan_get_workspace_size(f.plan, &bytes), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_shape first");
    REQUIRE(flashsci_plan_set_shape(f.plan, 1, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_get_kernel_name(f.plan, &name), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_dtype first");
    CHECK(bytes == 123);
    REQUIRE(flashsci_plan_set_dtype(f.plan, FLASHSCI_DTYPE_BFLOAT16) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_get_workspace_size(f.plan, nullptr), FLASHSCI_STATUS_INVALID_VALUE, "bytes");
    require_failure(flashsci_plan_get_kernel_name(f.plan, nullptr), FLASHSCI_STATUS_INVALID_VALUE, "name");
    require_failure(flashsci_plan_get_workspace_size(nullptr, &bytes), FLASHSCI_STATUS_INVALID_VALUE, "plan");
    REQUIRE(flashsci_plan_get_workspace_size(f.plan, &bytes) == FLASHSCI_STATUS_SUCCESS);
    CHECK(bytes == 0);
    REQUIRE(flashsci_plan_get_kernel_name(f.plan, &name) == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::string(name) == "cpu");
}

TEST_CASE("forward rejects incomplete plans and bad pointers without writing", "[api]") {
    CpuFixture f;
    require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE, "no shape");
    f.require_outputs_untouched();
    REQUIRE(flashsci_plan_set_shape(f.plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE, "no dtype");
    f.require_outputs_untouched();
    REQUIRE(flashsci_plan_set_dtype(f.plan, FLASHSCI_DTYPE_FLOAT32) == FLASHSCI_STATUS_SUCCESS);

    void* o = f.o.data();
    float* lse = f.lse_data();
    const void *q = f.q.data(), *k = f.k.data(), *v = f.v.data();
    require_failure(flashsci_forward(nullptr, q, k, v, o, lse, nullptr, 0, nullptr), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan must not be NULL");
    require_failure(flashsci_forward(f.plan, nullptr, k, v, o, lse, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "q must not be NULL");
    require_failure(flashsci_forward(f.plan, q, nullptr, v, o, lse, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "k must not be NULL");
    require_failure(flashsci_forward(f.plan, q, k, nullptr, o, lse, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "v must not be NULL");
    require_failure(flashsci_forward(f.plan, q, k, v, nullptr, lse, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "o must not be NULL");
    const void* misaligned = static_cast<const char*>(q) + 1;
    require_failure(flashsci_forward(f.plan, misaligned, k, v, o, lse, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "must be aligned to its 4-byte element type");
    require_failure(flashsci_forward(f.plan, q, k, v, o, reinterpret_cast<float*>(f.lse_data()) + 0, nullptr, 0,
                                     reinterpret_cast<flashsci_stream_t>(uintptr_t(0x40))),
                    FLASHSCI_STATUS_INVALID_VALUE, "must be NULL on the CPU backend");
    f.require_outputs_untouched();

    // Outputs that alias inputs, or each other.
    require_failure(flashsci_forward(f.plan, q, k, v, f.q.data(), nullptr, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "o overlaps q");
    require_failure(flashsci_forward(f.plan, q, k, v, o, static_cast<float*>(o) + 8, nullptr, 0, nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE, "lse overlaps o");
    f.require_outputs_untouched();
    REQUIRE(f.forward() == FLASHSCI_STATUS_SUCCESS);
    CHECK_FALSE(f.o.is_poisoned());
}

TEST_CASE("a plan can be re-shaped and reused", "[api]") {
    CpuFixture f;
    f.set_valid_problem();
    REQUIRE(f.forward() == FLASHSCI_STATUS_SUCCESS);
    HostTensor small_q(FLASHSCI_DTYPE_FLOAT32, 8), small_o(FLASHSCI_DTYPE_FLOAT32, 8);
    std::mt19937_64 rng(flashsci::test::fresh_seed());
    small_q.fill_random(rng);
    small_o.poison();
    REQUIRE(flashsci_plan_set_shape(f.plan, 1, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
    // One key: the output is exactly that key's value row.
    REQUIRE(flashsci_forward(f.plan, small_q.data(), small_q.data(), small_q.data(), small_o.data(), nullptr, nullptr,
                             0, nullptr) == FLASHSCI_STATUS_SUCCESS);
    for (size_t i = 0; i < 8; ++i) CHECK(small_o.get(i) == Approx(small_q.get(i)).epsilon(1e-6));
}
