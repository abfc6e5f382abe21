// The backward's C ABI contract: every bad argument of the backward, precision and determinism functions gets the
// right status and a message naming it, and a failing call writes nothing.
#include <catch2/catch.hpp>
#include <flashsci.h>
#include <flashsci.hpp>

#include <climits>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tensors.h"

using flashsci::test::HostTensor;

namespace {

constexpr int64_t kBatch = 2, kSeqQ = 5, kSeqK = 7, kHeadsQ = 4, kHeadsKv = 2, kHeadDim = 16;
constexpr size_t kQueryElements = size_t(kBatch * kSeqQ * kHeadsQ * kHeadDim);
constexpr size_t kKeyElements = size_t(kBatch * kSeqK * kHeadsKv * kHeadDim);
constexpr size_t kLseElements = size_t(kBatch * kHeadsQ * kSeqQ);

std::string last_error() { return flashsci_last_error(); }

void require_failure(flashsci_status_t got, flashsci_status_t expected, const std::string& fragment) {
    CHECK(got == expected);
    INFO("message: " << last_error());
    CHECK(last_error().find(fragment) != std::string::npos);
}

// A CPU plan with a small valid fp32 problem, the forward's o and lse for fresh inputs, and poisoned gradients to
// prove a failing call wrote nothing.
struct BackwardFixture {
    flashsci_plan_t plan = nullptr;
    HostTensor q{FLASHSCI_DTYPE_FLOAT32, kQueryElements}, k{FLASHSCI_DTYPE_FLOAT32, kKeyElements},
        v{FLASHSCI_DTYPE_FLOAT32, kKeyElements}, o{FLASHSCI_DTYPE_FLOAT32, kQueryElements},
        dout{FLASHSCI_DTYPE_FLOAT32, kQueryElements}, lse{FLASHSCI_DTYPE_FLOAT32, kLseElements};
    HostTensor dq{FLASHSCI_DTYPE_FLOAT32, kQueryElements}, dk{FLASHSCI_DTYPE_FLOAT32, kKeyElements},
        dv{FLASHSCI_DTYPE_FLOAT32, kKeyElements};

    BackwardFixture() {
        std::mt19937_64 rng(flashsci::test::fresh_seed());
        q.fill_random(rng), k.fill_random(rng), v.fill_random(rng), dout.fill_random(rng);
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_shape(plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
                FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_forward(plan, q.data(), k.data(), v.data(), o.data(), lse_data(), nullptr, 0, nullptr) ==
                FLASHSCI_STATUS_SUCCESS);
        poison_gradients();
    }
    ~BackwardFixture() { flashsci_plan_destroy(plan); }

    float* lse_data() { return static_cast<float*>(lse.data()); }
    void poison_gradients() { dq.poison(), dk.poison(), dv.poison(); }

    flashsci_status_t backward() {
        return flashsci_backward(plan, q.data(), k.data(), v.data(), o.data(), dout.data(), lse_data(), dq.data(),
                                 dk.data(), dv.data(), nullptr, 0, nullptr);
    }

    void require_gradients_untouched() {
        CHECK(dq.is_poisoned());
        CHECK(dk.is_poisoned());
        CHECK(dv.is_poisoned());
    }
};

// The arguments of one backward call, to replace one at a time.
struct BackwardArgs {
    const void *q, *k, *v, *o, *dout;
    const float* lse;
    void *dq, *dk, *dv;
    void* workspace;
    size_t workspace_bytes;
    flashsci_stream_t stream;
};

BackwardArgs valid_args(BackwardFixture& f) {
    return {f.q.data(), f.k.data(), f.v.data(), f.o.data(), f.dout.data(), f.lse_data(),
            f.dq.data(), f.dk.data(), f.dv.data(), nullptr, 0, nullptr};
}

flashsci_status_t call(flashsci_plan_t plan, const BackwardArgs& a) {
    return flashsci_backward(plan, a.q, a.k, a.v, a.o, a.dout, a.lse, a.dq, a.dk, a.dv, a.workspace,
                             a.workspace_bytes, a.stream);
}

template <class T>
T* shifted(T* pointer, ptrdiff_t bytes) {
    return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(pointer) + uintptr_t(bytes));
}

}  // namespace

TEST_CASE("set_precision accepts the three modes and names a bad value", "[api][backward]") {
    BackwardFixture f;
    for (int bad : {-1, 3, 100, INT_MIN, INT_MAX}) {
        CHECK(flashsci_plan_set_precision(f.plan, static_cast<flashsci_precision_t>(bad)) ==
              FLASHSCI_STATUS_INVALID_VALUE);
        CHECK(last_error() == "flashsci_plan_set_precision: precision (" + std::to_string(bad) +
                                  ") must be FLASHSCI_PRECISION_DEFAULT (0), FLASHSCI_PRECISION_TF32 (1) or "
                                  "FLASHSCI_PRECISION_IEEE (2)");
    }
    require_failure(flashsci_plan_set_precision(nullptr, FLASHSCI_PRECISION_IEEE), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan must not be NULL");
    // The CPU backend computes fp32 exactly in every mode: the same bits whatever the setting.
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    const HostTensor first = f.dq;
    for (flashsci_precision_t precision :
         {FLASHSCI_PRECISION_TF32, FLASHSCI_PRECISION_IEEE, FLASHSCI_PRECISION_DEFAULT}) {
        REQUIRE(flashsci_plan_set_precision(f.plan, precision) == FLASHSCI_STATUS_SUCCESS);
        f.poison_gradients();
        REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
        CHECK(std::memcmp(first.data(), f.dq.data(), first.size_bytes()) == 0);
    }
}

TEST_CASE("set_deterministic takes 0 or 1 and names anything else", "[api][backward]") {
    BackwardFixture f;
    for (int bad : {2, -1, 7})
        require_failure(flashsci_plan_set_deterministic(f.plan, bad), FLASHSCI_STATUS_INVALID_VALUE,
                        "deterministic (" + std::to_string(bad) + ") must be 0 or 1");
    require_failure(flashsci_plan_set_deterministic(nullptr, 1), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan must not be NULL");
    CHECK(flashsci_plan_set_deterministic(f.plan, 1) == FLASHSCI_STATUS_SUCCESS);
    CHECK(flashsci_plan_set_deterministic(f.plan, 0) == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("get_backward_workspace_size needs shape and dtype and names its arguments", "[api][backward]") {
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    size_t bytes = 123;
    require_failure(flashsci_plan_get_backward_workspace_size(plan, &bytes), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_shape first");
    REQUIRE(flashsci_plan_set_shape(plan, 1, 3, 3, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_get_backward_workspace_size(plan, &bytes), FLASHSCI_STATUS_INVALID_VALUE,
                    "call flashsci_plan_set_dtype first");
    CHECK(bytes == 123);
    REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_get_backward_workspace_size(plan, nullptr), FLASHSCI_STATUS_INVALID_VALUE,
                    "bytes must not be NULL");
    require_failure(flashsci_plan_get_backward_workspace_size(nullptr, &bytes), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan must not be NULL");
    for (int deterministic : {0, 1}) {
        REQUIRE(flashsci_plan_set_deterministic(plan, deterministic) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_get_backward_workspace_size(plan, &bytes) == FLASHSCI_STATUS_SUCCESS);
        CHECK(bytes == 0);  // the CPU backward needs none
    }
    flashsci_plan_destroy(plan);
}

TEST_CASE("set_strides takes the backward's tensors, and dq, dk and dv must not overlap themselves", "[api][backward]") {
    BackwardFixture f;
    const struct {
        flashsci_tensor_t tensor;
        const char* name;
        int64_t seqlen, heads;
    } outputs[] = {{FLASHSCI_TENSOR_DQ, "dq", kSeqQ, kHeadsQ},
                   {FLASHSCI_TENSOR_DK, "dk", kSeqK, kHeadsKv},
                   {FLASHSCI_TENSOR_DV, "dv", kSeqK, kHeadsKv}};
    for (const auto& out : outputs) {
        INFO(out.name);
        const int64_t batch_stride = out.seqlen * out.heads * kHeadDim;
        require_failure(flashsci_plan_set_strides(f.plan, out.tensor, batch_stride, 0, kHeadDim),
                        FLASHSCI_STATUS_INVALID_VALUE,
                        std::string("the strides of ") + out.name + " (" + std::to_string(batch_stride) +
                            ", 0, 16) make output elements overlap");
        require_failure(flashsci_plan_set_strides(f.plan, out.tensor, -1, 1, 1), FLASHSCI_STATUS_INVALID_VALUE,
                        std::string("batch_stride of ") + out.name + " (-1)");
        // BHSD is fine.
        CHECK(flashsci_plan_set_strides(f.plan, out.tensor, out.heads * out.seqlen * kHeadDim, kHeadDim,
                                        out.seqlen * kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    }
    // dout is an input: it may broadcast.
    CHECK(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_DO, 0, 0, 0) == FLASHSCI_STATUS_SUCCESS);
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_DO, 1, -2, 1), FLASHSCI_STATUS_INVALID_VALUE,
                    "seq_stride of dout (-2)");
    require_failure(flashsci_plan_set_strides(f.plan, static_cast<flashsci_tensor_t>(8), 1, 1, 1),
                    FLASHSCI_STATUS_INVALID_VALUE, "_DV (7)");
}

TEST_CASE("set_shape resets the backward's strides to contiguous", "[api][backward]") {
    BackwardFixture f;
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    const HostTensor contiguous_dq = f.dq, contiguous_dk = f.dk;
    // Broadcast dout and a BHSD dq change the result; set_shape undoes both.
    REQUIRE(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_DO, 0, 0, 0) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_DQ, kHeadsQ * kSeqQ * kHeadDim, kHeadDim,
                                      kSeqQ * kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    f.poison_gradients();
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::memcmp(contiguous_dk.data(), f.dk.data(), f.dk.size_bytes()) != 0);
    REQUIRE(flashsci_plan_set_shape(f.plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    f.poison_gradients();
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::memcmp(contiguous_dq.data(), f.dq.data(), f.dq.size_bytes()) == 0);
    CHECK(std::memcmp(contiguous_dk.data(), f.dk.data(), f.dk.size_bytes()) == 0);
}

TEST_CASE("backward rejects incomplete plans, bad pointers, aliasing and streams without writing",
          "[api][backward]") {
    BackwardFixture f;
    {
        flashsci_plan_t bare = nullptr;
        REQUIRE(flashsci_plan_create(&bare, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        require_failure(call(bare, valid_args(f)), FLASHSCI_STATUS_INVALID_VALUE,
                        "flashsci_backward: the plan has no shape");
        REQUIRE(flashsci_plan_set_shape(bare, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
                FLASHSCI_STATUS_SUCCESS);
        require_failure(call(bare, valid_args(f)), FLASHSCI_STATUS_INVALID_VALUE, "no dtype");
        flashsci_plan_destroy(bare);
    }
    require_failure(call(nullptr, valid_args(f)), FLASHSCI_STATUS_INVALID_VALUE, "plan must not be NULL");

    const struct {
        const char* name;
        void (*clear)(BackwardArgs&);
    } nulls[] = {{"q", [](BackwardArgs& a) { a.q = nullptr; }},       {"k", [](BackwardArgs& a) { a.k = nullptr; }},
                 {"v", [](BackwardArgs& a) { a.v = nullptr; }},       {"o", [](BackwardArgs& a) { a.o = nullptr; }},
                 {"dout", [](BackwardArgs& a) { a.dout = nullptr; }}, {"lse", [](BackwardArgs& a) { a.lse = nullptr; }},
                 {"dq", [](BackwardArgs& a) { a.dq = nullptr; }},     {"dk", [](BackwardArgs& a) { a.dk = nullptr; }},
                 {"dv", [](BackwardArgs& a) { a.dv = nullptr; }}};
    for (const auto& n : nulls) {
        BackwardArgs a = valid_args(f);
        n.clear(a);
        require_failure(call(f.plan, a), FLASHSCI_STATUS_INVALID_VALUE,
                        std::string("flashsci_backward: ") + n.name + " must not be NULL");
    }
    const struct {
        const char* name;
        void (*misalign)(BackwardArgs&);
    } misaligned[] = {{"dout", [](BackwardArgs& a) { a.dout = shifted(a.dout, 2); }},
                      {"lse", [](BackwardArgs& a) { a.lse = shifted(a.lse, 1); }},
                      {"dq", [](BackwardArgs& a) { a.dq = shifted(a.dq, 2); }},
                      {"dk", [](BackwardArgs& a) { a.dk = shifted(a.dk, 1); }},
                      {"dv", [](BackwardArgs& a) { a.dv = shifted(a.dv, 3); }},
                      {"o", [](BackwardArgs& a) { a.o = shifted(a.o, 2); }}};
    for (const auto& m : misaligned) {
        BackwardArgs a = valid_args(f);
        m.misalign(a);
        require_failure(call(f.plan, a), FLASHSCI_STATUS_INVALID_VALUE,
                        std::string(m.name) + " (0x");  // "(address) must be aligned"
        CHECK(last_error().find("must be aligned to its") != std::string::npos);
    }
    f.require_gradients_untouched();

    // Gradients overlapping an input or each other.
    BackwardArgs a = valid_args(f);
    const struct {
        const char* message;
        BackwardArgs args;
    } overlaps[] = {
        {"dq overlaps q", {a.q, a.k, a.v, a.o, a.dout, a.lse, const_cast<void*>(a.q), a.dk, a.dv, nullptr, 0, nullptr}},
        {"dq overlaps o", {a.q, a.k, a.v, a.o, a.dout, a.lse, const_cast<void*>(a.o), a.dk, a.dv, nullptr, 0, nullptr}},
        {"dk overlaps v", {a.q, a.k, a.v, a.o, a.dout, a.lse, a.dq, const_cast<void*>(a.v), a.dv, nullptr, 0, nullptr}},
        {"dv overlaps dout",
         {a.q, a.k, a.v, a.o, a.dout, a.lse, a.dq, a.dk, const_cast<void*>(a.dout), nullptr, 0, nullptr}},
        {"dv overlaps lse", {a.q, a.k, a.v, a.o, a.dout, static_cast<const float*>(a.dv), a.dq, a.dk, a.dv, nullptr, 0,
                             nullptr}},
        {"dk overlaps dq", {a.q, a.k, a.v, a.o, a.dout, a.lse, a.dq, shifted(a.dq, 64), a.dv, nullptr, 0, nullptr}},
        {"dv overlaps dk", {a.q, a.k, a.v, a.o, a.dout, a.lse, a.dq, a.dk, a.dk, nullptr, 0, nullptr}},
    };
    for (const auto& o : overlaps) {
        INFO(o.message);
        require_failure(call(f.plan, o.args), FLASHSCI_STATUS_INVALID_VALUE, o.message);
    }
    // Inputs may share memory: dout = o is a valid (if odd) request.
    BackwardArgs shared = a;
    shared.dout = a.o;
    f.require_gradients_untouched();

    BackwardArgs streamed = a;
    streamed.stream = reinterpret_cast<flashsci_stream_t>(uintptr_t(0x40));
    require_failure(call(f.plan, streamed), FLASHSCI_STATUS_INVALID_VALUE, "stream (0x40) must be NULL on the CPU");
    f.require_gradients_untouched();

    // A variable-length plan is flashsci_backward_varlen's.
    REQUIRE(flashsci_plan_set_varlen_shape(f.plan, kBatch, kBatch * kSeqQ, kBatch * kSeqK, kSeqQ, kSeqK, kHeadsQ,
                                           kHeadsKv, kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    require_failure(call(f.plan, a), FLASHSCI_STATUS_INVALID_VALUE, "call flashsci_backward_varlen");
    f.require_gradients_untouched();

    REQUIRE(flashsci_plan_set_shape(f.plan, kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim) ==
            FLASHSCI_STATUS_SUCCESS);
    REQUIRE(call(f.plan, shared) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(call(f.plan, a) == FLASHSCI_STATUS_SUCCESS);
    CHECK_FALSE(f.dq.is_poisoned());
    CHECK_FALSE(f.dk.is_poisoned());
    CHECK_FALSE(f.dv.is_poisoned());
}

TEST_CASE("backward_varlen rejects dense plans, bad offsets and aliasing, naming them, without writing",
          "[api][backward][varlen]") {
    BackwardFixture f;  // its buffers hold the packed batch: kBatch sequences of kSeqQ queries and kSeqK keys
    std::vector<int32_t> cu_q{0, int32_t(kSeqQ), int32_t(2 * kSeqQ)}, cu_k{0, int32_t(kSeqK), int32_t(2 * kSeqK)};
    const BackwardArgs a = valid_args(f);
    auto call_varlen = [&](flashsci_plan_t plan, const BackwardArgs& x, const int32_t* q_offsets,
                           const int32_t* k_offsets) {
        return flashsci_backward_varlen(plan, x.q, x.k, x.v, x.o, x.dout, x.lse, x.dq, x.dk, x.dv, q_offsets,
                                        k_offsets, nullptr, 0, x.stream);
    };
    require_failure(call_varlen(f.plan, a, cu_q.data(), cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_backward_varlen: the plan has a dense shape (flashsci_plan_set_shape); call "
                    "flashsci_backward,");
    REQUIRE(flashsci_plan_set_varlen_shape(f.plan, kBatch, kBatch * kSeqQ, kBatch * kSeqK, kSeqQ, kSeqK, kHeadsQ,
                                           kHeadsKv, kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    require_failure(call_varlen(nullptr, a, cu_q.data(), cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "plan must not be NULL");
    require_failure(call_varlen(f.plan, a, nullptr, cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "cu_seqlens_q must not be NULL");
    require_failure(call_varlen(f.plan, a, cu_q.data(), nullptr), FLASHSCI_STATUS_INVALID_VALUE,
                    "cu_seqlens_k must not be NULL");
    require_failure(call_varlen(f.plan, a, shifted(cu_q.data(), 2), cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "must be aligned to its 4-byte element type");
    BackwardArgs no_lse = a;
    no_lse.lse = nullptr;
    require_failure(call_varlen(f.plan, no_lse, cu_q.data(), cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "lse must not be NULL");
    f.require_gradients_untouched();

    // Offsets are checked before anything is written, and the first bad index named.
    const struct {
        std::vector<int32_t> q, k;
        const char* message;
    } bad_offsets[] = {
        {{1, int32_t(kSeqQ), int32_t(2 * kSeqQ)}, cu_k, "cu_seqlens_q[0] (1) must be 0"},
        {cu_q, {0, 6, 5}, "cu_seqlens_k[2] (5) is below cu_seqlens_k[1] (6)"},
        {{0, 2, int32_t(2 * kSeqQ + 1)}, cu_k, "cu_seqlens_q[2] (11) exceeds total_q (10)"},
        {cu_q, {0, 1, int32_t(2 * kSeqK)}, "cu_seqlens_k[2] - cu_seqlens_k[1] (13) exceeds max_seqlen_k (7)"},
    };
    for (const auto& bad : bad_offsets) {
        require_failure(call_varlen(f.plan, a, bad.q.data(), bad.k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                        bad.message);
        f.require_gradients_untouched();
    }

    // Gradients over the offsets.
    std::vector<float> dq_with_offsets(kQueryElements + 8);
    BackwardArgs over_offsets = a;
    over_offsets.dq = dq_with_offsets.data();
    require_failure(call_varlen(f.plan, over_offsets, reinterpret_cast<int32_t*>(dq_with_offsets.data() + 4),
                                cu_k.data()),
                    FLASHSCI_STATUS_INVALID_VALUE, "dq overlaps cu_seqlens_q");
    BackwardArgs streamed = a;
    streamed.stream = reinterpret_cast<flashsci_stream_t>(uintptr_t(0x40));
    require_failure(call_varlen(f.plan, streamed, cu_q.data(), cu_k.data()), FLASHSCI_STATUS_INVALID_VALUE,
                    "must be NULL on the CPU backend");
    f.require_gradients_untouched();

    // And flashsci_backward refuses the varlen plan, while backward_varlen runs it.
    require_failure(call(f.plan, a), FLASHSCI_STATUS_INVALID_VALUE, "call flashsci_backward_varlen");
    REQUIRE(call_varlen(f.plan, a, cu_q.data(), cu_k.data()) == FLASHSCI_STATUS_SUCCESS);
    CHECK_FALSE(f.dq.is_poisoned());
}

TEST_CASE("the C++ wrapper's backward is the C call, and throws the library's message", "[api][backward]") {
    BackwardFixture f;
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    const HostTensor want_dq = f.dq, want_dk = f.dk, want_dv = f.dv;
    f.poison_gradients();
    flashsci::Plan plan(flashsci::Backend::cpu);
    plan.set_shape({kBatch, kSeqQ, kSeqK, kHeadsQ, kHeadsKv, kHeadDim})
        .set_dtype(flashsci::Dtype::float32)
        .set_precision(flashsci::Precision::ieee)
        .set_deterministic(true)
        .set_strides(flashsci::Tensor::dq, kSeqQ * kHeadsQ * kHeadDim, kHeadsQ * kHeadDim, kHeadDim);
    CHECK(plan.backward_workspace_size() == 0);
    plan.backward(f.q.data(), f.k.data(), f.v.data(), f.o.data(), f.dout.data(), f.lse_data(), f.dq.data(),
                  f.dk.data(), f.dv.data());
    CHECK(std::memcmp(want_dq.data(), f.dq.data(), want_dq.size_bytes()) == 0);
    CHECK(std::memcmp(want_dk.data(), f.dk.data(), want_dk.size_bytes()) == 0);
    CHECK(std::memcmp(want_dv.data(), f.dv.data(), want_dv.size_bytes()) == 0);
    try {
        plan.backward(f.q.data(), f.k.data(), f.v.data(), f.o.data(), f.dout.data(), nullptr, f.dq.data(),
                      f.dk.data(), f.dv.data());
        FAIL("a NULL lse was accepted");
    } catch (const flashsci::Error& e) {
        CHECK(e.status() == FLASHSCI_STATUS_INVALID_VALUE);
        CHECK(e.message() == "flashsci_backward: lse must not be NULL");
    }
    std::vector<int32_t> cu_q{0, int32_t(kSeqQ), int32_t(2 * kSeqQ)}, cu_k{0, int32_t(kSeqK), int32_t(2 * kSeqK)};
    CHECK_THROWS_AS(plan.backward_varlen(f.q.data(), f.k.data(), f.v.data(), f.o.data(), f.dout.data(),
                                         f.lse_data(), f.dq.data(), f.dk.data(), f.dv.data(), cu_q.data(),
                                         cu_k.data()),
                    flashsci::Error);
    CHECK_THROWS_AS(plan.set_precision(static_cast<flashsci::Precision>(5)), flashsci::Error);
}

TEST_CASE("one plan serves concurrent backwards and forwards, each giving its lone result", "[api][backward]") {
    constexpr int kThreads = 4;
    BackwardFixture f;
    REQUIRE(f.backward() == FLASHSCI_STATUS_SUCCESS);
    struct Outputs {
        HostTensor dq{FLASHSCI_DTYPE_FLOAT32, kQueryElements}, dk{FLASHSCI_DTYPE_FLOAT32, kKeyElements},
            dv{FLASHSCI_DTYPE_FLOAT32, kKeyElements}, o{FLASHSCI_DTYPE_FLOAT32, kQueryElements};
        flashsci_status_t backward_status = FLASHSCI_STATUS_INTERNAL_ERROR, forward_status = backward_status;
    };
    std::vector<Outputs> outputs(kThreads);
    std::vector<std::thread> threads;
    for (Outputs& out : outputs)
        threads.emplace_back([&f, &out] {
            out.backward_status = flashsci_backward(f.plan, f.q.data(), f.k.data(), f.v.data(), f.o.data(),
                                                    f.dout.data(), f.lse_data(), out.dq.data(), out.dk.data(),
                                                    out.dv.data(), nullptr, 0, nullptr);
            out.forward_status = flashsci_forward(f.plan, f.q.data(), f.k.data(), f.v.data(), out.o.data(), nullptr,
                                                  nullptr, 0, nullptr);
        });
    for (std::thread& t : threads) t.join();
    for (const Outputs& out : outputs) {
        CHECK(out.backward_status == FLASHSCI_STATUS_SUCCESS);
        CHECK(out.forward_status == FLASHSCI_STATUS_SUCCESS);
        CHECK(std::memcmp(out.dq.data(), f.dq.data(), f.dq.size_bytes()) == 0);
        CHECK(std::memcmp(out.dk.data(), f.dk.data(), f.dk.size_bytes()) == 0);
        CHECK(std::memcmp(out.dv.data(), f.dv.data(), f.dv.size_bytes()) == 0);
        CHECK(std::memcmp(out.o.data(), f.o.data(), f.o.size_bytes()) == 0);
    }
}
