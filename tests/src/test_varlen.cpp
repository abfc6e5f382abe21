// Variable-length (packed) batches: the API contract of flashsci_plan_set_varlen_shape and
// flashsci_forward_varlen, and the CPU backend against the fp64 reference sequence by sequence.
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference.h"
#include "tensors.h"
#include "varlen_cases.h"

using flashsci::test::HostTensor;
using flashsci::test::VarlenOffsets;
using namespace flashsci::test::varlen;

namespace {

// ---- the API contract ---------------------------------------------------------------------------------------
// Three sequences of 2, 0 and 3 queries (one spare token after them) over 4, 1 and 0 keys.
constexpr int64_t kBatch = 3, kTotalQ = 6, kTotalK = 5, kMaxQ = 3, kMaxK = 4;
constexpr int64_t kHeadsQ = 4, kHeadsKv = 2, kHeadDim = 16;
const std::vector<int32_t> kCuQ{0, 2, 2, 5}, kCuK{0, 4, 5, 5};

std::string last_error() { return flashsci_last_error(); }

void require_failure(flashsci_status_t got, flashsci_status_t expected, const std::string& fragment) {
    CHECK(got == expected);
    INFO("message: " << last_error());
    CHECK(last_error().find(fragment) != std::string::npos);
}

// A CPU plan, fp32 inputs of the small problem above and poisoned outputs.
struct Fixture {
    flashsci_plan_t plan = nullptr;
    HostTensor q{FLASHSCI_DTYPE_FLOAT32, size_t(kTotalQ * kHeadsQ * kHeadDim)};
    HostTensor k{FLASHSCI_DTYPE_FLOAT32, size_t(kTotalK * kHeadsKv * kHeadDim)};
    HostTensor v{FLASHSCI_DTYPE_FLOAT32, size_t(kTotalK * kHeadsKv * kHeadDim)};
    HostTensor o{FLASHSCI_DTYPE_FLOAT32, size_t(kTotalQ * kHeadsQ * kHeadDim)};
    HostTensor lse{FLASHSCI_DTYPE_FLOAT32, size_t(kHeadsQ * kTotalQ)};
    std::vector<int32_t> cu_q = kCuQ, cu_k = kCuK;

    Fixture() {
        std::mt19937_64 rng(flashsci::test::fresh_seed());
        q.fill_random(rng), k.fill_random(rng), v.fill_random(rng);
        o.poison(), lse.poison();
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    }
    ~Fixture() { flashsci_plan_destroy(plan); }

    void set_valid_problem() {
        REQUIRE_OK(flashsci_plan_set_varlen_shape(plan, kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv,
                                                  kHeadDim));
        REQUIRE_OK(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32));
    }
    float* lse_data() { return static_cast<float*>(lse.data()); }
    flashsci_status_t forward() {
        return flashsci_forward_varlen(plan, q.data(), k.data(), v.data(), o.data(), lse_data(), cu_q.data(),
                                       cu_k.data(), nullptr, 0, nullptr);
    }
    void require_outputs_untouched() {
        CHECK(o.is_poisoned());
        CHECK(lse.is_poisoned());
    }
    // After a successful forward: the rows of the three sequences written, the spare token's row not.
    void require_sequence_rows_written() {
        for (int64_t t = 0; t < kTotalQ; ++t) {
            const bool owned = t < kCuQ.back();
            for (int64_t h = 0; h < kHeadsQ; ++h) {
                CHECK(std::isnan(lse.get(size_t(h * kTotalQ + t))) != owned);
                for (int64_t d = 0; d < kHeadDim; ++d)
                    CHECK(std::isnan(o.get(size_t((t * kHeadsQ + h) * kHeadDim + d))) != owned);
            }
        }
    }
};

}  // namespace

TEST_CASE("varlen: set_varlen_shape rejects each bad argument, names it, and keeps the old shape", "[api][varlen]") {
    Fixture f;
    f.set_valid_problem();
    const int64_t huge = std::numeric_limits<int64_t>::max() / 2, two_to_31 = int64_t{1} << 31;
    struct Case {
        int64_t batch, total_q, total_k, max_q, max_k, heads_q, heads_kv, head_dim;
        const char* message;
    } cases[] = {
        {0, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim, "batch (0) must be at least 1"},
        {kBatch, 0, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim, "total_q (0) must be at least 1"},
        {kBatch, kTotalQ, -1, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim, "total_k (-1) must be at least 1"},
        {kBatch, kTotalQ, kTotalK, 0, kMaxK, kHeadsQ, kHeadsKv, kHeadDim, "max_seqlen_q (0) must be at least 1"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, -5, kHeadsQ, kHeadsKv, kHeadDim, "max_seqlen_k (-5) must be at least 1"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, 0, kHeadsKv, kHeadDim, "heads_q (0) must be at least 1"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, 0, kHeadDim, "heads_kv (0) must be at least 1"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, 12,
         "flashsci_plan_set_varlen_shape: head_dim (12) must be a multiple of 8 from 8 to 256"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, 12, 5, kHeadDim, "heads_q (12) must be a multiple of heads_kv (5)"},
        {kBatch, kTotalQ, kTotalK, kTotalQ + 1, kMaxK, kHeadsQ, kHeadsKv, kHeadDim,
         "max_seqlen_q (7) must not exceed total_q (6)"},
        {kBatch, kTotalQ, kTotalK, kMaxQ, kTotalK + 1, kHeadsQ, kHeadsKv, kHeadDim,
         "max_seqlen_k (6) must not exceed total_k (5)"},
        {kBatch, two_to_31, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim,
         "total_q (2147483648) must be below 2^31: cu_seqlens_q holds int32 offsets"},
        {kBatch, kTotalQ, two_to_31 + 5, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim,
         "total_k (2147483653) must be below 2^31: cu_seqlens_k holds int32 offsets"},
        {huge, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv, kHeadDim, "overflows a 64-bit byte count"},
        {kBatch, two_to_31 - 1, kTotalK, two_to_31 - 1, kMaxK, huge, huge, 256, "overflows a 64-bit byte count"},
    };
    for (const Case& c : cases) {
        INFO(c.message);
        require_failure(flashsci_plan_set_varlen_shape(f.plan, c.batch, c.total_q, c.total_k, c.max_q, c.max_k,
                                                       c.heads_q, c.heads_kv, c.head_dim),
                        FLASHSCI_STATUS_INVALID_VALUE, c.message);
    }
    require_failure(flashsci_plan_set_varlen_shape(nullptr, 1, 1, 1, 1, 1, 1, 1, 8), FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_plan_set_varlen_shape: plan must not be NULL");
    // The valid varlen shape still holds: its buffers are filled, row by row as the offsets say.
    REQUIRE_OK(f.forward());
    f.require_sequence_rows_written();

    // A dense plan stays dense after a refused varlen shape.
    Fixture dense;
    REQUIRE_OK(flashsci_plan_set_shape(dense.plan, 1, kTotalQ, kTotalK, kHeadsQ, kHeadsKv, kHeadDim));
    REQUIRE_OK(flashsci_plan_set_dtype(dense.plan, FLASHSCI_DTYPE_FLOAT32));
    CHECK(flashsci_plan_set_varlen_shape(dense.plan, 0, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv,
                                         kHeadDim) == FLASHSCI_STATUS_INVALID_VALUE);
    REQUIRE_OK(flashsci_forward(dense.plan, dense.q.data(), dense.k.data(), dense.v.data(), dense.o.data(), nullptr,
                                nullptr, 0, nullptr));
}

TEST_CASE("varlen: strides need batch_stride 0 on a variable-length plan, and describe a packed QKV tensor",
          "[api][varlen]") {
    Fixture f;
    f.set_valid_problem();
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_Q, 1, kHeadsQ * kHeadDim, kHeadDim),
                    FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_plan_set_strides: batch_stride of q (1) must be 0 on a variable-length plan");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_O, kTotalQ * kHeadsQ * kHeadDim,
                                              kHeadsQ * kHeadDim, kHeadDim),
                    FLASHSCI_STATUS_INVALID_VALUE, "batch_stride of o (384) must be 0");
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_K, -1, 16, 16), FLASHSCI_STATUS_INVALID_VALUE,
                    "batch_stride of k (-1) must be at least 0");
    const int64_t huge = std::numeric_limits<int64_t>::max() / 2;
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_V, 0, huge, 16), FLASHSCI_STATUS_INVALID_VALUE,
                    "overflow");
    // Every token of o at one address.
    require_failure(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_O, 0, 0, kHeadDim),
                    FLASHSCI_STATUS_INVALID_VALUE, "overlap");
    // A packed [total, 3, heads, head_dim] QKV tensor (k and v heads as many as q heads would be; here GQA 4:2).
    const int64_t row = (kHeadsQ + 2 * kHeadsKv) * kHeadDim;
    for (const flashsci_tensor_t t : {FLASHSCI_TENSOR_Q, FLASHSCI_TENSOR_K, FLASHSCI_TENSOR_V})
        CHECK(flashsci_plan_set_strides(f.plan, t, 0, row, kHeadDim) == FLASHSCI_STATUS_SUCCESS);
    // set_varlen_shape resets them; set_shape makes the plan dense, where a batch stride is allowed again.
    REQUIRE_OK(flashsci_plan_set_varlen_shape(f.plan, kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv,
                                              kHeadDim));
    REQUIRE_OK(f.forward());  // contiguous again: the buffers of the contiguous layout are enough
    f.require_sequence_rows_written();
    REQUIRE_OK(flashsci_plan_set_shape(f.plan, 2, 3, 2, kHeadsQ, kHeadsKv, kHeadDim));
    CHECK(flashsci_plan_set_strides(f.plan, FLASHSCI_TENSOR_Q, 3 * kHeadsQ * kHeadDim, kHeadsQ * kHeadDim,
                                    kHeadDim) == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("varlen: flashsci_forward and flashsci_forward_varlen refuse each other's plans, naming the other",
          "[api][varlen]") {
    Fixture f;
    require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_forward_varlen: the plan has no shape; call flashsci_plan_set_varlen_shape first");
    REQUIRE_OK(flashsci_plan_set_varlen_shape(f.plan, kBatch, kTotalQ, kTotalK, kMaxQ, kMaxK, kHeadsQ, kHeadsKv,
                                              kHeadDim));
    require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE, "no dtype");
    REQUIRE_OK(flashsci_plan_set_dtype(f.plan, FLASHSCI_DTYPE_FLOAT32));
    require_failure(flashsci_forward(f.plan, f.q.data(), f.k.data(), f.v.data(), f.o.data(), f.lse_data(), nullptr, 0,
                                     nullptr),
                    FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_forward: the plan has a variable-length shape (flashsci_plan_set_varlen_shape); call "
                    "flashsci_forward_varlen");
    f.require_outputs_untouched();

    size_t bytes = 1;
    const char* name = nullptr;
    REQUIRE_OK(flashsci_plan_get_workspace_size(f.plan, &bytes));
    CHECK(bytes == 0);
    REQUIRE_OK(flashsci_plan_get_kernel_name(f.plan, &name));
    CHECK(std::string(name) == "cpu");

    // set_shape makes the plan dense: now flashsci_forward runs it and flashsci_forward_varlen refuses it.
    REQUIRE_OK(flashsci_plan_set_shape(f.plan, 1, kTotalQ, kTotalK, kHeadsQ, kHeadsKv, kHeadDim));
    require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE,
                    "flashsci_forward_varlen: the plan has a dense shape (flashsci_plan_set_shape); call "
                    "flashsci_forward");
    f.require_outputs_untouched();
    REQUIRE_OK(flashsci_forward(f.plan, f.q.data(), f.k.data(), f.v.data(), f.o.data(), nullptr, nullptr, 0,
                                nullptr));
    CHECK_FALSE(f.o.is_poisoned());
}

TEST_CASE("varlen: forward_varlen rejects bad pointers, aliasing and streams, naming them, without writing",
          "[api][varlen]") {
    Fixture f;
    f.set_valid_problem();
    const void *q = f.q.data(), *k = f.k.data(), *v = f.v.data();
    void* o = f.o.data();
    float* lse = f.lse_data();
    const int32_t *cu_q = f.cu_q.data(), *cu_k = f.cu_k.data();
    const auto call = [&](flashsci_plan_t plan, const void* q_, const void* k_, const void* v_, void* o_, float* lse_,
                          const int32_t* cq, const int32_t* ck, flashsci_stream_t stream = nullptr) {
        return flashsci_forward_varlen(plan, q_, k_, v_, o_, lse_, cq, ck, nullptr, 0, stream);
    };
    const auto* misaligned = reinterpret_cast<const int32_t*>(reinterpret_cast<const char*>(f.cu_q.data()) + 2);
    const std::pair<std::function<flashsci_status_t()>, const char*> calls[] = {
        {[&] { return call(nullptr, q, k, v, o, lse, cu_q, cu_k); }, "flashsci_forward_varlen: plan must not be NULL"},
        {[&] { return call(f.plan, nullptr, k, v, o, lse, cu_q, cu_k); }, "q must not be NULL"},
        {[&] { return call(f.plan, q, nullptr, v, o, lse, cu_q, cu_k); }, "k must not be NULL"},
        {[&] { return call(f.plan, q, k, nullptr, o, lse, cu_q, cu_k); }, "v must not be NULL"},
        {[&] { return call(f.plan, q, k, v, nullptr, lse, cu_q, cu_k); }, "o must not be NULL"},
        {[&] { return call(f.plan, q, k, v, o, lse, nullptr, cu_k); }, "cu_seqlens_q must not be NULL"},
        {[&] { return call(f.plan, q, k, v, o, lse, cu_q, nullptr); }, "cu_seqlens_k must not be NULL"},
        {[&] { return call(f.plan, q, k, v, o, lse, misaligned, cu_k); }, "must be aligned to its 4-byte element"},
        {[&] { return call(f.plan, q, k, v, o, lse, cu_q, misaligned); }, "must be aligned to its 4-byte element"},
        {[&] { return call(f.plan, static_cast<const char*>(q) + 2, k, v, o, lse, cu_q, cu_k); },
         "q (" /* then its address */},
        {[&] { return call(f.plan, q, k, v, const_cast<void*>(q), nullptr, cu_q, cu_k); }, "o overlaps q"},
        {[&] { return call(f.plan, q, k, v, o, static_cast<float*>(o) + 4, cu_q, cu_k); }, "lse overlaps o"},
        {[&] { return call(f.plan, q, k, v, o, lse, static_cast<const int32_t*>(o) + 8, cu_k); },
         "o overlaps cu_seqlens_q"},
        {[&] { return call(f.plan, q, k, v, o, lse, cu_q, reinterpret_cast<const int32_t*>(lse) + 1); },
         "lse overlaps cu_seqlens_k"},
        {[&] { return call(f.plan, q, k, v, o, lse, cu_q, cu_k, reinterpret_cast<flashsci_stream_t>(uintptr_t(0x40))); },
         "stream (0x40) must be NULL on the CPU backend"},
    };
    for (const auto& [run, message] : calls) {
        INFO(message);
        require_failure(run(), FLASHSCI_STATUS_INVALID_VALUE, message);
        f.require_outputs_untouched();
    }
    REQUIRE_OK(f.forward());
    f.require_sequence_rows_written();
}

TEST_CASE("varlen: the CPU backend checks every offset first and names the array and the first bad index",
          "[api][varlen]") {
    struct Case {
        std::vector<int32_t> cu_q, cu_k;
        const char* message;
    } cases[] = {
        {{1, 2, 2, 5}, kCuK, "flashsci_forward_varlen: cu_seqlens_q[0] (1) must be 0"},
        {{0, 2, 1, 5}, kCuK,
         "cu_seqlens_q[2] (1) is below cu_seqlens_q[1] (2); offsets must be nondecreasing"},
        {{0, -1, 2, 5}, kCuK, "cu_seqlens_q[1] (-1) is below cu_seqlens_q[0] (0)"},
        {{0, 2, 1, 9}, kCuK, "cu_seqlens_q[2] (1) is below"},  // the first bad index, not the last
        {{0, 2, 2, 7}, kCuK, "cu_seqlens_q[3] (7) exceeds total_q (6)"},
        {{0, 2, 2, std::numeric_limits<int32_t>::max()}, kCuK, "cu_seqlens_q[3] (2147483647) exceeds total_q (6)"},
        {{0, 4, 4, 5}, kCuK,
         "cu_seqlens_q[1] - cu_seqlens_q[0] (4) exceeds max_seqlen_q (3): sequence 0 is longer than the plan's "
         "maximum"},
        {kCuQ, {2, 4, 5, 5}, "cu_seqlens_k[0] (2) must be 0"},
        {kCuQ, {0, 4, 3, 5}, "cu_seqlens_k[2] (3) is below cu_seqlens_k[1] (4)"},
        {kCuQ, {0, 4, 5, 6}, "cu_seqlens_k[3] (6) exceeds total_k (5)"},
        {kCuQ, {0, 0, 5, 5}, "cu_seqlens_k[2] - cu_seqlens_k[1] (5) exceeds max_seqlen_k (4): sequence 1"},
    };
    for (const Case& c : cases) {
        INFO(c.message);
        Fixture f;
        f.set_valid_problem();
        f.cu_q = c.cu_q, f.cu_k = c.cu_k;
        require_failure(f.forward(), FLASHSCI_STATUS_INVALID_VALUE, c.message);
        f.require_outputs_untouched();
    }
    // Offsets that stop short of the totals, and empty sequences, are valid.
    Fixture f;
    f.set_valid_problem();
    f.cu_k = {0, 0, 0, 3};
    REQUIRE_OK(f.forward());
    f.require_sequence_rows_written();
}

// ---- the CPU backend against fp64 ---------------------------------------------------------------------------
namespace {

// Output: max |O - O_ref| / max |O_ref| (16-bit outputs are rounded to their dtype). LSE: |lse - lse_ref| /
// max(1, |lse_ref|). As tests/src/cpu/test_cpu_attention.cpp.
constexpr double kFp32Tolerance = 1e-5;
constexpr double kHalfTolerance = 1e-2;
constexpr double kFp32LseTolerance = 1e-4;
constexpr double kHalfLseTolerance = 1e-3;
// Rows per (sequence, head) compared with the reference in long sequences, spread from the first to the last.
constexpr int64_t kSampledRows = 48;

constexpr flashsci_dtype_t kAllDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};

// Mixed lengths: 1, 17, 127, 129 and 1000 queries; a sequence with no queries; one with no keys; and as many
// keys as queries, fewer (bottom-right causal then leaves rows that see nothing) or more.
const std::vector<int64_t> kMixedQ{1, 17, 127, 129, 1000, 0, 40};
const std::vector<int64_t> kMixedK{17, 1, 129, 127, 1000, 5, 0};

struct Comparison {
    double max_out_error = 0, max_out_reference = 0, max_lse_error = 0;
    int64_t rows_compared = 0;
    int64_t blind_rows = 0, blind_mismatches = 0;  // rows that see no key: O = 0 and LSE = -inf exactly
    int64_t unwritten = 0;                         // owned elements of O or LSE still poisoned
    int64_t written_outside = 0;                   // elements of O or LSE outside every sequence not poisoned
};

int64_t sampled_row(int64_t len, int64_t n) {
    return len <= kSampledRows ? n : n * (len - 1) / (kSampledRows - 1);
}

Comparison compare_with_fp64(const Case& c, const Placement& pl, const HostTensor& in, const Outputs& out) {
    Comparison r;
    const Owned owned = owned_elements(c, pl);
    for (size_t e = 0; e < pl.output_count; ++e) {
        const bool poisoned = element_poisoned(out.o, e);
        r.unwritten += owned.o[e] && poisoned;
        r.written_outside += !owned.o[e] && !poisoned;
    }
    if (c.with_lse)
        for (size_t e = 0; e < pl.lse_count; ++e) {
            const bool poisoned = lse_poisoned(out.lse[e]);
            r.unwritten += owned.lse[e] && poisoned;
            r.written_outside += !owned.lse[e] && !poisoned;
        }
    const VarlenOffsets cu = offsets_of(c);
    const int64_t total_q = totals_of(c).total_q;
    for (int64_t b = 0; b < batch_of(c); ++b)
        for (int64_t h = 0; h < c.heads_q; ++h)
            for (int64_t n = 0; n < std::min(cu.len_q(b), kSampledRows); ++n) {
                const int64_t i = sampled_row(cu.len_q(b), n), token = cu.q[size_t(b)] + i;
                const flashsci::test::RowResult ref = flashsci::test::reference_varlen_row(
                    cu, c.heads_q, c.heads_kv, c.head_dim, c.mask, scale_of(c), in, pl.q, in, pl.k, in, pl.v, b, h, i,
                    features_of(c, h));
                ++r.rows_compared;
                const double lse = c.with_lse ? out.lse[size_t(h * total_q + token)] : ref.lse;
                bool zero = true;
                for (int64_t d = 0; d < c.head_dim; ++d) {
                    const double got = out.o.get(pl.o.offset(0, token, h) + size_t(d));
                    zero = zero && got == 0.0;
                    if (std::isinf(ref.lse)) continue;
                    r.max_out_error = std::max(r.max_out_error, std::fabs(got - ref.out[size_t(d)]));
                    r.max_out_reference = std::max(r.max_out_reference, std::fabs(ref.out[size_t(d)]));
                }
                if (std::isinf(ref.lse)) {
                    ++r.blind_rows;
                    r.blind_mismatches += !(zero && lse == ref.lse);
                    continue;
                }
                r.max_lse_error =
                    std::max(r.max_lse_error, std::fabs(lse - ref.lse) / std::max(1.0, std::fabs(ref.lse)));
            }
    return r;
}

// The case on fresh random inputs through the CPU backend, against fp64; returns the comparison.
Comparison check_case(const Case& c) {
    const uint64_t seed = flashsci::test::fresh_seed();
    INFO("case: " << describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Placement pl = place(c);
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    const Outputs out = run_cpu(c, pl, in);
    const Comparison r = compare_with_fp64(c, pl, in, out);
    const bool fp32 = c.dtype == FLASHSCI_DTYPE_FLOAT32;
    INFO("max |O - ref| " << r.max_out_error << ", max |ref| " << r.max_out_reference << ", LSE error "
                          << r.max_lse_error << ", rows " << r.rows_compared << ", blind " << r.blind_rows);
    CHECK(r.rows_compared > 0);
    CHECK(r.unwritten == 0);
    CHECK(r.written_outside == 0);
    CHECK(r.max_out_error <= (fp32 ? kFp32Tolerance : kHalfTolerance) * r.max_out_reference);
    CHECK(r.max_lse_error <= (fp32 ? kFp32LseTolerance : kHalfLseTolerance));
    CHECK(r.blind_mismatches == 0);
    return r;
}

Case mixed(flashsci_dtype_t dtype, flashsci_mask_t mask) {
    Case c;
    c.dtype = dtype, c.mask = mask;
    c.lens_q = kMixedQ, c.lens_k = kMixedK;
    c.spare_q = 3, c.spare_k = 2;  // tokens after the last sequence: never written
    c.max_extra_q = 20;            // a maximum above the longest sequence: more blocks, all empty
    return c;
}

// Compared rows that see no key: every row of a sequence without keys; under bottom-right causal, rows
// i < len_q - len_k (no window here).
int64_t blind_rows(const Case& c) {
    int64_t rows = 0;
    for (int64_t b = 0; b < batch_of(c); ++b) {
        const int64_t len_q = c.lens_q[size_t(b)], len_k = c.lens_k[size_t(b)];
        for (int64_t n = 0; n < std::min(len_q, kSampledRows); ++n) {
            const int64_t i = sampled_row(len_q, n);
            rows += len_k == 0 || (c.mask == FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT && i < len_q - len_k);
        }
    }
    return rows * c.heads_q;
}

}  // namespace

TEST_CASE("varlen CPU: mixed lengths (1 to 1000, empty, keyless) match fp64 under every mask and dtype",
          "[cpu][varlen]") {
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    for (const flashsci_dtype_t dtype : kAllDtypes) {
        const Case c = mixed(dtype, mask);
        const Comparison r = check_case(c);
        CHECK(r.blind_rows == blind_rows(c));
    }
}

TEST_CASE("varlen CPU: sliding windows, softcap and ALiBi apply per sequence with its own lengths",
          "[cpu][varlen][window][softcap][alibi]") {
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    const std::pair<int64_t, int64_t> windows[] = {{-1, -1}, {0, 0}, {16, -1}, {-1, 8}, {5, 3}};
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32})
        for (const auto& [left, right] : windows) {
            Case c;
            c.dtype = dtype, c.mask = mask;
            c.lens_q = {1, 17, 129, 300, 0, 64}, c.lens_k = {17, 1, 300, 129, 3, 64};
            c.heads_q = 6, c.heads_kv = 2, c.head_dim = 40;
            c.window_left = left, c.window_right = right;
            check_case(c);
            c.softcap = 5.0f;
            check_case(c);
            c.alibi_slopes = alibi_slopes(c.heads_q);
            check_case(c);
        }
}

TEST_CASE("varlen CPU: grouped and multi-query heads", "[cpu][varlen]") {
    const auto heads = GENERATE(std::make_pair(8, 2), std::make_pair(6, 1), std::make_pair(3, 3));
    for (const flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.dtype = dtype, c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
        c.lens_q = {33, 1, 70}, c.lens_k = {50, 2, 70};
        c.heads_q = heads.first, c.heads_kv = heads.second, c.head_dim = 16;
        check_case(c);
    }
}

TEST_CASE("varlen CPU: q, k, v as slices of one packed QKV tensor, o with padded rows", "[cpu][varlen]") {
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL);
    const auto heads = GENERATE(std::make_pair(4, 4), std::make_pair(4, 2));
    for (const flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.dtype = dtype, c.mask = mask, c.storage = Storage::packed_qkv;
        c.lens_q = c.lens_k = {33, 1, 0, 70, 5};
        c.heads_q = heads.first, c.heads_kv = heads.second, c.head_dim = 24;
        c.spare_q = c.spare_k = 2;
        check_case(c);
    }
}

TEST_CASE("varlen CPU: a sequence without keys gets O = 0 and LSE = -inf, one without queries writes nothing",
          "[cpu][varlen]") {
    for (const flashsci_dtype_t dtype : kAllDtypes)
        for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT}) {
            Case c;
            c.dtype = dtype, c.mask = mask;
            c.lens_q = {3, 40, 0, 7}, c.lens_k = {5, 0, 9, 0};
            const Comparison r = check_case(c);
            CHECK(r.blind_rows == (40 + 7) * c.heads_q);
        }
}

TEST_CASE("varlen CPU: without an LSE, and with a custom scale", "[cpu][varlen]") {
    Case c = mixed(FLASHSCI_DTYPE_FLOAT32, FLASHSCI_MASK_CAUSAL);
    c.with_lse = false;
    c.scale = 0.3f;
    check_case(c);
}

// Sequences of one length are a dense batch: the same bits, O in the same memory, LSE transposed.
TEST_CASE("varlen CPU: equal lengths give the dense batch's result bit for bit", "[cpu][varlen]") {
    constexpr int64_t kSequences = 3, kLenQ = 50, kLenK = 77;
    for (const flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.dtype = dtype, c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
        c.lens_q.assign(kSequences, kLenQ), c.lens_k.assign(kSequences, kLenK);
        c.window_left = 20, c.alibi_slopes = alibi_slopes(c.heads_q);
        const uint64_t seed = flashsci::test::fresh_seed();
        INFO(describe(c) << ", seed " << seed);
        std::mt19937_64 rng(seed);
        const Placement pl = place(c);
        HostTensor in(c.dtype, pl.input_count);
        in.fill_random(rng);
        const Outputs varlen = run_cpu(c, pl, in);

        CpuPlan plan;
        REQUIRE_OK(flashsci_plan_set_shape(plan, kSequences, kLenQ, kLenK, c.heads_q, c.heads_kv, c.head_dim));
        REQUIRE_OK(flashsci_plan_set_dtype(plan, c.dtype));
        REQUIRE_OK(flashsci_plan_set_mask(plan, c.mask));
        REQUIRE_OK(flashsci_plan_set_window(plan, c.window_left, c.window_right));
        REQUIRE_OK(flashsci_plan_set_alibi_slopes(plan, c.alibi_slopes.data()));
        Outputs dense = poisoned_outputs(c, pl);
        const auto* base = static_cast<const unsigned char*>(in.data());
        const size_t bytes = flashsci::test::dtype_bytes(c.dtype);
        REQUIRE_OK(flashsci_forward(plan, base, base + size_t(pl.k.base) * bytes, base + size_t(pl.v.base) * bytes,
                                    dense.o.data(), dense.lse.data(), nullptr, 0, nullptr));
        CHECK(std::memcmp(varlen.o.data(), dense.o.data(), varlen.o.size_bytes()) == 0);
        int64_t lse_differences = 0;
        for (int64_t b = 0; b < kSequences; ++b)
            for (int64_t h = 0; h < c.heads_q; ++h)
                for (int64_t i = 0; i < kLenQ; ++i) {
                    const float v = varlen.lse[size_t(h * kSequences * kLenQ + b * kLenQ + i)];
                    const float d = dense.lse[size_t((b * c.heads_q + h) * kLenQ + i)];
                    lse_differences += std::memcmp(&v, &d, sizeof v) != 0;
                }
        CHECK(lse_differences == 0);
    }
}
