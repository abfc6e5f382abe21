// The CPU backward against the fp64 reference gradients, through the public API, on fresh random inputs, on the
// path FLASHSCI_CPU_ISA names and on every path forced in turn; the fast paths also against the reference path and
// at one thread against all; and the fp64 reference itself against central finite differences of the fp64 forward.
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "reference.h"
#include "tensors.h"

using flashsci::test::DenseProblem;
using flashsci::test::HostTensor;
using flashsci::test::Layout;
using flashsci::test::ReferenceGradients;
using flashsci::test::Shape;

namespace {

// A gradient's max |g - g_ref| / max |g_ref|. fp32 gradients of the reference path are computed in fp64 and
// rounded once, but from the forward's o and lse, themselves rounded to fp32; the fast paths accumulate them in
// fp32 (sums of up to seqlen terms); fp16/bf16 ones accumulate in fp32 on every path from an o rounded to 16 bits
// and are rounded to 16 bits (bf16: 2^-9 relative).
constexpr double kFp32Tolerance = 1e-6;
constexpr double kFp32FastTolerance = 1e-5;
constexpr double kFp16Tolerance = 2e-3;
constexpr double kBf16Tolerance = 1.5e-2;
// Central finite differences of the fp64 forward: step, and the agreement expected of the reference's gradients.
constexpr double kFiniteDifferenceStep = 1e-5;
constexpr double kFiniteDifferenceTolerance = 1e-7;
// Extra elements between rows, heads and sequences of the padded layout.
constexpr int64_t kPadding = 8;
constexpr float kSoftcap = 5.0f;

constexpr flashsci_dtype_t kAllDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};
constexpr flashsci_mask_t kAllMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};

constexpr const char* kIsaVariable = "FLASHSCI_CPU_ISA";
constexpr const char* kThreadsVariable = "FLASHSCI_NUM_THREADS";
constexpr const char* kReferencePath = "reference";
constexpr const char* kAllPaths[] = {"reference", "portable", "avx2", "avx512"};

// Sets an environment variable for its lifetime and restores what was there.
class ScopedVariable {
public:
    ScopedVariable(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) had_old_ = true, old_ = old;
        setenv(name, value, 1);
    }
    ~ScopedVariable() {
        if (had_old_) setenv(name_, old_.c_str(), 1);
        else unsetenv(name_);
    }
    ScopedVariable(const ScopedVariable&) = delete;
    ScopedVariable& operator=(const ScopedVariable&) = delete;

private:
    const char* name_;
    bool had_old_ = false;
    std::string old_;
};

// Whether FLASHSCI_CPU_ISA forces the reference path (else a fast one runs).
bool on_reference_path() {
    const char* isa = std::getenv(kIsaVariable);
    return isa != nullptr && std::strcmp(isa, kReferencePath) == 0;
}

double tolerance(flashsci_dtype_t dtype) {
    switch (dtype) {
        case FLASHSCI_DTYPE_FLOAT16: return kFp16Tolerance;
        case FLASHSCI_DTYPE_BFLOAT16: return kBf16Tolerance;
        case FLASHSCI_DTYPE_FLOAT32: break;
    }
    return on_reference_path() ? kFp32Tolerance : kFp32FastTolerance;
}

// The paths this machine runs, as FLASHSCI_CPU_ISA names them.
std::vector<const char*> available_paths() {
    std::vector<const char*> paths;
    for (const char* isa : kAllPaths) {
        const ScopedVariable scope(kIsaVariable, isa);
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_shape(plan, 1, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
        const char* name = nullptr;
        if (flashsci_plan_get_kernel_name(plan, &name) == FLASHSCI_STATUS_SUCCESS) paths.push_back(isa);
        flashsci_plan_destroy(plan);
    }
    return paths;
}

// The tensors of a backward, in flashsci_tensor_t order.
constexpr flashsci_tensor_t kTensors[] = {FLASHSCI_TENSOR_Q,  FLASHSCI_TENSOR_K,  FLASHSCI_TENSOR_V,
                                          FLASHSCI_TENSOR_O,  FLASHSCI_TENSOR_DO, FLASHSCI_TENSOR_DQ,
                                          FLASHSCI_TENSOR_DK, FLASHSCI_TENSOR_DV};

bool has_key_rows(flashsci_tensor_t t) {
    return t == FLASHSCI_TENSOR_K || t == FLASHSCI_TENSOR_V || t == FLASHSCI_TENSOR_DK || t == FLASHSCI_TENSOR_DV;
}

// A tensor's layout and the elements it spans: contiguous, or (strided cases) BHSD and padded by turns, so that
// strides mixed up between tensors show.
struct Placement {
    Layout layout;
    size_t count;
};

Placement placement(bool strided, flashsci_tensor_t tensor, int64_t batch, int64_t seqlen, int64_t heads,
                    int64_t head_dim) {
    const size_t dense = size_t(batch * seqlen * heads * head_dim);
    if (!strided) return {flashsci::test::contiguous_layout(seqlen, heads, head_dim), dense};
    if (tensor % 2 == 0) return {flashsci::test::bhsd_layout(seqlen, heads, head_dim), dense};
    const int64_t head = head_dim + kPadding, seq = heads * head + kPadding, sequence = seqlen * seq + kPadding;
    return {{sequence, seq, head}, size_t(batch * sequence)};
}

struct Case {
    Shape shape;
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_FLOAT32;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    int64_t window_left = -1, window_right = -1;
    float softcap = 0.0f;
    bool alibi = false;
    bool strided = false;
    float scale = 0.0f;  // 0: the plan's default, 1/sqrt(head_dim)
    float input_range = 1.0f;
    double tolerance_factor = 1.0;  // on the dtype's tolerance
};

std::string describe(const Case& c) {
    std::ostringstream s;
    s << "batch " << c.shape.batch << ", seqlen_q " << c.shape.seqlen_q << ", seqlen_k " << c.shape.seqlen_k
      << ", heads " << c.shape.heads_q << "/" << c.shape.heads_kv << ", head_dim " << c.shape.head_dim << ", "
      << flashsci::test::dtype_name(c.dtype) << ", mask " << int(c.mask) << ", window (" << c.window_left << ", "
      << c.window_right << "), softcap " << c.softcap << ", alibi " << c.alibi << ", strided " << c.strided
      << ", scale " << c.scale << ", range " << c.input_range;
    return s.str();
}

// Sets everything but the shape (which differs between dense and varlen plans) and the strides.
void configure(flashsci_plan_t plan, const Case& c) {
    REQUIRE(flashsci_plan_set_dtype(plan, c.dtype) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_mask(plan, c.mask) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_window(plan, c.window_left, c.window_right) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_softcap(plan, c.softcap) == FLASHSCI_STATUS_SUCCESS);
    if (c.scale > 0) REQUIRE(flashsci_plan_set_softmax_scale(plan, c.scale) == FLASHSCI_STATUS_SUCCESS);
    const std::vector<float> slopes = flashsci::test::geometric_alibi_slopes(c.shape.heads_q);
    REQUIRE(flashsci_plan_set_alibi_slopes(plan, c.alibi ? slopes.data() : nullptr) == FLASHSCI_STATUS_SUCCESS);
}

DenseProblem reference_problem(const Case& c, const Shape& shape) {
    DenseProblem a{shape, c.mask, c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(shape.head_dim)), {}, {}};
    a.features.window_left = c.window_left, a.features.window_right = c.window_right;
    a.features.softcap = c.softcap;
    if (c.alibi)
        for (float slope : flashsci::test::geometric_alibi_slopes(shape.heads_q)) a.slopes.push_back(slope);
    return a;
}

// The largest |got - want| relative to the largest |want| (or absolute when want is all zero).
double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
    double error = 0, scale = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        error = std::max(error, std::isfinite(got[i]) ? std::abs(got[i] - want[i]) : INFINITY);
        scale = std::max(scale, std::abs(want[i]));
    }
    return scale > 0 ? error / scale : error;
}

// Elements of t that are not the poison pattern (all bytes 0xff).
size_t written_elements(const HostTensor& t) {
    const auto* bytes = static_cast<const unsigned char*>(t.data());
    const size_t width = flashsci::test::dtype_bytes(t.dtype());
    size_t written = 0;
    for (size_t i = 0; i < t.count(); ++i)
        written += !std::all_of(bytes + i * width, bytes + (i + 1) * width, [](unsigned char b) { return b == 0xff; });
    return written;
}

struct Tensors {
    std::vector<HostTensor> by_tensor;  // flashsci_tensor_t order
    std::vector<Layout> layouts;
    HostTensor& operator[](flashsci_tensor_t t) { return by_tensor[size_t(t)]; }
};

// Runs forward (for o and lse) then backward on fresh inputs, compares every gradient with the fp64 reference,
// checks that nothing outside the tensors was written, and that a second backward gives the same bits.
void check_dense(const Case& c) {
    INFO(describe(c));
    const uint64_t seed = flashsci::test::fresh_seed();
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    const Shape& s = c.shape;
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim) ==
            FLASHSCI_STATUS_SUCCESS);
    configure(plan, c);
    Tensors t;
    for (flashsci_tensor_t tensor : kTensors) {
        const bool keys = has_key_rows(tensor);
        const Placement at = placement(c.strided, tensor, s.batch, keys ? s.seqlen_k : s.seqlen_q,
                                       keys ? s.heads_kv : s.heads_q, s.head_dim);
        t.by_tensor.emplace_back(c.dtype, at.count);
        t.layouts.push_back(at.layout);
        REQUIRE(flashsci_plan_set_strides(plan, tensor, at.layout.batch, at.layout.seq, at.layout.head) ==
                FLASHSCI_STATUS_SUCCESS);
    }
    for (flashsci_tensor_t input : {FLASHSCI_TENSOR_Q, FLASHSCI_TENSOR_K, FLASHSCI_TENSOR_V, FLASHSCI_TENSOR_DO})
        t[input].fill_random(rng, c.input_range);
    for (flashsci_tensor_t output : {FLASHSCI_TENSOR_O, FLASHSCI_TENSOR_DQ, FLASHSCI_TENSOR_DK, FLASHSCI_TENSOR_DV})
        t[output].poison();
    HostTensor lse(FLASHSCI_DTYPE_FLOAT32, size_t(s.batch * s.heads_q * s.seqlen_q));
    lse.poison();
    REQUIRE(flashsci_forward(plan, t[FLASHSCI_TENSOR_Q].data(), t[FLASHSCI_TENSOR_K].data(),
                             t[FLASHSCI_TENSOR_V].data(), t[FLASHSCI_TENSOR_O].data(), static_cast<float*>(lse.data()),
                             nullptr, 0, nullptr) == FLASHSCI_STATUS_SUCCESS);
    auto backward = [&] {
        return flashsci_backward(plan, t[FLASHSCI_TENSOR_Q].data(), t[FLASHSCI_TENSOR_K].data(),
                                 t[FLASHSCI_TENSOR_V].data(), t[FLASHSCI_TENSOR_O].data(),
                                 t[FLASHSCI_TENSOR_DO].data(), static_cast<const float*>(lse.data()),
                                 t[FLASHSCI_TENSOR_DQ].data(), t[FLASHSCI_TENSOR_DK].data(),
                                 t[FLASHSCI_TENSOR_DV].data(), nullptr, 0, nullptr);
    };
    {
        INFO(flashsci_last_error());
        REQUIRE(backward() == FLASHSCI_STATUS_SUCCESS);
    }

    auto gathered = [&](flashsci_tensor_t tensor) {
        const bool keys = has_key_rows(tensor);
        return flashsci::test::gather(t[tensor], t.layouts[size_t(tensor)], s.batch, keys ? s.seqlen_k : s.seqlen_q,
                                      keys ? s.heads_kv : s.heads_q, s.head_dim);
    };
    const ReferenceGradients want =
        flashsci::test::reference_gradients(reference_problem(c, s), gathered(FLASHSCI_TENSOR_Q),
                                            gathered(FLASHSCI_TENSOR_K), gathered(FLASHSCI_TENSOR_V),
                                            gathered(FLASHSCI_TENSOR_DO));
    const struct {
        const char* name;
        flashsci_tensor_t tensor;
        const std::vector<double>& want;
    } gradients[] = {{"dq", FLASHSCI_TENSOR_DQ, want.dq}, {"dk", FLASHSCI_TENSOR_DK, want.dk},
                     {"dv", FLASHSCI_TENSOR_DV, want.dv}};
    for (const auto& g : gradients) {
        INFO(g.name);
        CHECK(relative_error(gathered(g.tensor), g.want) <= c.tolerance_factor * tolerance(c.dtype));
        CHECK(written_elements(t[g.tensor]) == g.want.size());
    }

    // Run to run, bit for bit, and at one thread as at all; at 3 and 7 threads the fast paths split each (sequence,
    // kv head) of a small batch into dQ and dK/dV items, which must give the same bits.
    std::vector<HostTensor> first;
    for (const auto& g : gradients) first.push_back(t[g.tensor]);
    for (const char* threads : {"", "1", "3", "7"}) {
        INFO("FLASHSCI_NUM_THREADS=" << threads);
        const ScopedVariable scope(kThreadsVariable, threads);
        for (const auto& g : gradients) t[g.tensor].poison();
        REQUIRE(backward() == FLASHSCI_STATUS_SUCCESS);
        for (size_t n = 0; n < std::size(gradients); ++n)
            CHECK(std::memcmp(first[n].data(), t[gradients[n].tensor].data(), first[n].size_bytes()) == 0);
    }
    // A fast path against the reference path on the same inputs.
    if (!on_reference_path()) {
        const double fast_tolerance = c.tolerance_factor * tolerance(c.dtype);
        std::vector<std::vector<double>> fast;
        for (const auto& g : gradients) fast.push_back(gathered(g.tensor)), t[g.tensor].poison();
        const ScopedVariable scope(kIsaVariable, kReferencePath);
        REQUIRE(backward() == FLASHSCI_STATUS_SUCCESS);
        for (size_t n = 0; n < std::size(gradients); ++n) {
            INFO(gradients[n].name << " against the reference path");
            CHECK(relative_error(fast[n], gathered(gradients[n].tensor)) <= fast_tolerance);
        }
    }
    flashsci_plan_destroy(plan);
}

Case dense(flashsci_dtype_t dtype, Shape shape, flashsci_mask_t mask = FLASHSCI_MASK_NONE) {
    Case c;
    c.shape = shape, c.dtype = dtype, c.mask = mask;
    return c;
}

}  // namespace

TEST_CASE("the fp64 reference gradients agree with central finite differences of the fp64 forward", "[cpu][backward]") {
    // Loss L = Σ dO∘O: its gradient with respect to each input element, against (L(x + h) - L(x - h)) / 2h.
    std::mt19937_64 rng(flashsci::test::fresh_seed());
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    struct Variant {
        flashsci_mask_t mask;
        int64_t window_left, window_right;
        double softcap;
        bool alibi;
    } variants[] = {{FLASHSCI_MASK_NONE, -1, -1, 0, false},
                    {FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, 1, -1, 0, false},
                    {FLASHSCI_MASK_CAUSAL, -1, -1, 0.8, false},
                    {FLASHSCI_MASK_NONE, -1, 1, 0.8, true}};
    const Shape shape{2, 3, 4, 4, 2, 8};
    for (const Variant& variant : variants) {
        DenseProblem a{shape, variant.mask, 0.7, {}, {}};
        a.features.window_left = variant.window_left, a.features.window_right = variant.window_right;
        a.features.softcap = variant.softcap;
        if (variant.alibi) a.slopes = {0.5, 0.25, 0.125, 0.0625};
        INFO("mask " << int(variant.mask) << ", softcap " << variant.softcap << ", alibi " << variant.alibi);
        auto random = [&](int64_t seqlen, int64_t heads) {
            std::vector<double> x(size_t(shape.batch * seqlen * heads * shape.head_dim));
            for (double& e : x) e = uniform(rng);
            return x;
        };
        std::vector<double> q = random(shape.seqlen_q, shape.heads_q), k = random(shape.seqlen_k, shape.heads_kv),
                            v = random(shape.seqlen_k, shape.heads_kv), dout = random(shape.seqlen_q, shape.heads_q);
        const ReferenceGradients g = flashsci::test::reference_gradients(a, q, k, v, dout);
        auto loss = [&] {
            const std::vector<double> o = flashsci::test::reference_output(a, q, k, v);
            double sum = 0;
            for (size_t i = 0; i < o.size(); ++i) sum += dout[i] * o[i];
            return sum;
        };
        const struct {
            const char* name;
            std::vector<double>& input;
            const std::vector<double>& gradient;
        } inputs[] = {{"q", q, g.dq}, {"k", k, g.dk}, {"v", v, g.dv}};
        for (const auto& in : inputs) {
            INFO(in.name);
            double largest = 0;
            for (size_t i = 0; i < in.input.size(); ++i) {
                const double x = in.input[i];
                in.input[i] = x + kFiniteDifferenceStep;
                const double up = loss();
                in.input[i] = x - kFiniteDifferenceStep;
                const double down = loss();
                in.input[i] = x;
                const double numeric = (up - down) / (2 * kFiniteDifferenceStep);
                CHECK(std::abs(numeric - in.gradient[i]) <= kFiniteDifferenceTolerance);
                largest = std::max(largest, std::abs(in.gradient[i]));
            }
            CHECK(largest > 1e-3);  // the comparison saw gradients, not zeros
        }
    }
}

TEST_CASE("CPU backward matches fp64 at seqlens 1, 17, 127 and 129, every dtype and mask", "[cpu][backward]") {
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks)
            for (int64_t seqlen : {1, 17, 127, 129}) check_dense(dense(dtype, {2, seqlen, seqlen, 2, 2, 64}, mask));
}

TEST_CASE("CPU backward with seqlen_q != seqlen_k: rows that see no key get dq = 0", "[cpu][backward]") {
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks)
            for (auto lengths : {std::pair<int64_t, int64_t>{17, 129}, {129, 17}, {1, 127}, {127, 1}})
                check_dense(dense(dtype, {1, lengths.first, lengths.second, 2, 1, 40}, mask));
}

TEST_CASE("CPU backward at 1000 rows", "[cpu][backward]") {
    check_dense(dense(FLASHSCI_DTYPE_FLOAT32, {1, 1000, 1000, 1, 1, 64}, FLASHSCI_MASK_CAUSAL));
    check_dense(dense(FLASHSCI_DTYPE_BFLOAT16, {1, 1000, 333, 2, 1, 32}, FLASHSCI_MASK_NONE));
}

TEST_CASE("CPU backward at head_dim 8, 40, 64, 128 and 256", "[cpu][backward]") {
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (int64_t head_dim : {8, 40, 64, 128, 256})
            check_dense(dense(dtype, {1, 33, 70, 2, 1, head_dim}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT));
}

TEST_CASE("CPU backward sums dk and dv over grouped and multi-query heads", "[cpu][backward]") {
    for (flashsci_dtype_t dtype : kAllDtypes) {
        check_dense(dense(dtype, {2, 37, 45, 6, 2, 32}, FLASHSCI_MASK_CAUSAL));
        check_dense(dense(dtype, {1, 65, 31, 8, 1, 64}, FLASHSCI_MASK_NONE));
    }
}

TEST_CASE("CPU backward with a sliding window under every mask", "[cpu][backward][window]") {
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks)
            for (auto window : {std::pair<int64_t, int64_t>{0, 0}, {16, -1}, {-1, 8}, {5, 3}}) {
                Case c = dense(dtype, {1, 70, 90, 2, 1, 32}, mask);
                c.window_left = window.first, c.window_right = window.second;
                check_dense(c);
            }
}

TEST_CASE("CPU backward through a softcap (the tanh's chain rule) and ALiBi", "[cpu][backward][softcap][alibi]") {
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks) {
            Case capped = dense(dtype, {1, 50, 77, 2, 2, 64}, mask);
            capped.softcap = kSoftcap;
            capped.scale = 1.0f;  // scores reach the cap's bend
            check_dense(capped);
            Case biased = dense(dtype, {1, 77, 50, 4, 2, 64}, mask);
            biased.alibi = true;
            check_dense(biased);
        }
}

TEST_CASE("CPU backward reads and writes strided layouts, with everything on",
          "[cpu][backward][window][softcap][alibi]") {
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c = dense(dtype, {2, 45, 67, 4, 2, 40}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
        c.strided = true;
        check_dense(c);
        c.window_left = 9, c.window_right = 4, c.softcap = kSoftcap, c.alibi = true, c.mask = FLASHSCI_MASK_CAUSAL;
        check_dense(c);
    }
}

TEST_CASE("CPU backward stays finite and exact on large-magnitude inputs", "[cpu][backward]") {
    // Scores in the hundreds: P = exp(S - LSE) needs no running maximum, but the fp32 LSE carries an absolute
    // error of |LSE|·2^-24, which P inherits as a relative one (about 1e-6 here), as does the 16-bit o in D.
    constexpr float kLargeInputRange = 6.0f;
    constexpr double kFp32LargeScoreFactor = 10.0, kHalfLargeScoreFactor = 2.0;
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks) {
            Case c = dense(dtype, {1, 40, 60, 2, 1, 64}, mask);
            c.input_range = kLargeInputRange;
            c.tolerance_factor = dtype == FLASHSCI_DTYPE_FLOAT32 ? kFp32LargeScoreFactor : kHalfLargeScoreFactor;
            check_dense(c);
        }
}

TEST_CASE("CPU backward on every path this machine runs, every dtype, mask and feature, odd sizes",
          "[cpu][backward][window][softcap][alibi]") {
    for (const char* isa : available_paths()) {
        INFO("FLASHSCI_CPU_ISA=" << isa);
        const ScopedVariable scope(kIsaVariable, isa);
        for (flashsci_dtype_t dtype : kAllDtypes) {
            for (flashsci_mask_t mask : kAllMasks) {
                check_dense(dense(dtype, {2, 1, 1, 2, 1, 8}, mask));
                check_dense(dense(dtype, {1, 129, 127, 3, 1, 40}, mask));
                check_dense(dense(dtype, {1, 17, 200, 2, 2, 64}, mask));
            }
            for (int64_t head_dim : {8, 24, 72, 128, 256})
                check_dense(dense(dtype, {1, 70, 65, 2, 1, head_dim}, FLASHSCI_MASK_CAUSAL));
            Case everything = dense(dtype, {2, 45, 67, 4, 2, 40}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
            everything.strided = true, everything.window_left = 9, everything.window_right = 4;
            everything.softcap = kSoftcap, everything.alibi = true;
            check_dense(everything);
            Case window = dense(dtype, {1, 130, 70, 2, 1, 32}, FLASHSCI_MASK_NONE);
            window.window_left = 5, window.window_right = 70;
            check_dense(window);
        }
    }
}

namespace {

// A packed variable-length batch: every sequence's gradients against the reference of its own dense problem, and
// the rows past the last sequence left alone.
void check_varlen(const Case& c, const std::vector<int32_t>& lens_q, const std::vector<int32_t>& lens_k) {
    INFO(describe(c));
    const uint64_t seed = flashsci::test::fresh_seed();
    INFO("seed " << seed);
    std::mt19937_64 rng(seed);
    constexpr int64_t kSpareRows = 3;  // rows of each packed tensor past the last sequence: never written
    flashsci::test::VarlenOffsets cu{{0}, {0}};
    for (size_t b = 0; b < lens_q.size(); ++b) {
        cu.q.push_back(cu.q.back() + lens_q[b]);
        cu.k.push_back(cu.k.back() + lens_k[b]);
    }
    const int64_t batch = int64_t(lens_q.size());
    const int64_t total_q = cu.q.back() + kSpareRows, total_k = cu.k.back() + kSpareRows;
    const int64_t max_q = std::max<int64_t>(1, *std::max_element(lens_q.begin(), lens_q.end()));
    const int64_t max_k = std::max<int64_t>(1, *std::max_element(lens_k.begin(), lens_k.end()));
    const Shape& s = c.shape;  // heads and head_dim
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_varlen_shape(plan, batch, total_q, total_k, max_q, max_k, s.heads_q, s.heads_kv,
                                           s.head_dim) == FLASHSCI_STATUS_SUCCESS);
    configure(plan, c);
    Tensors t;
    for (flashsci_tensor_t tensor : kTensors) {
        const bool keys = has_key_rows(tensor);
        Placement at = placement(c.strided, tensor, 1, keys ? total_k : total_q, keys ? s.heads_kv : s.heads_q,
                                 s.head_dim);
        at.layout.batch = 0;
        t.by_tensor.emplace_back(c.dtype, at.count);
        t.layouts.push_back(at.layout);
        REQUIRE(flashsci_plan_set_strides(plan, tensor, 0, at.layout.seq, at.layout.head) == FLASHSCI_STATUS_SUCCESS);
    }
    for (flashsci_tensor_t input : {FLASHSCI_TENSOR_Q, FLASHSCI_TENSOR_K, FLASHSCI_TENSOR_V, FLASHSCI_TENSOR_DO})
        t[input].fill_random(rng);
    for (flashsci_tensor_t output : {FLASHSCI_TENSOR_O, FLASHSCI_TENSOR_DQ, FLASHSCI_TENSOR_DK, FLASHSCI_TENSOR_DV})
        t[output].poison();
    HostTensor lse(FLASHSCI_DTYPE_FLOAT32, size_t(s.heads_q * total_q));
    lse.poison();
    REQUIRE(flashsci_forward_varlen(plan, t[FLASHSCI_TENSOR_Q].data(), t[FLASHSCI_TENSOR_K].data(),
                                    t[FLASHSCI_TENSOR_V].data(), t[FLASHSCI_TENSOR_O].data(),
                                    static_cast<float*>(lse.data()), cu.q.data(), cu.k.data(), nullptr, 0,
                                    nullptr) == FLASHSCI_STATUS_SUCCESS);
    auto backward = [&] {
        return flashsci_backward_varlen(plan, t[FLASHSCI_TENSOR_Q].data(), t[FLASHSCI_TENSOR_K].data(),
                                        t[FLASHSCI_TENSOR_V].data(), t[FLASHSCI_TENSOR_O].data(),
                                        t[FLASHSCI_TENSOR_DO].data(), static_cast<const float*>(lse.data()),
                                        t[FLASHSCI_TENSOR_DQ].data(), t[FLASHSCI_TENSOR_DK].data(),
                                        t[FLASHSCI_TENSOR_DV].data(), cu.q.data(), cu.k.data(), nullptr, 0, nullptr);
    };
    {
        INFO(flashsci_last_error());
        REQUIRE(backward() == FLASHSCI_STATUS_SUCCESS);
    }
    // Sequence b as a dense problem of batch 1 whose row 0 is row cu[b] of the packed tensors.
    auto gathered = [&](flashsci_tensor_t tensor, int64_t b) {
        const bool keys = has_key_rows(tensor);
        Layout l = t.layouts[size_t(tensor)];
        l.base += (keys ? cu.k[size_t(b)] : cu.q[size_t(b)]) * l.seq;
        return flashsci::test::gather(t[tensor], l, 1, keys ? cu.len_k(b) : cu.len_q(b),
                                      keys ? s.heads_kv : s.heads_q, s.head_dim);
    };
    size_t written_q = 0, written_k = 0;
    for (int64_t b = 0; b < batch; ++b) {
        INFO("sequence " << b << ": " << cu.len_q(b) << " queries, " << cu.len_k(b) << " keys");
        const Shape sequence{1, cu.len_q(b), cu.len_k(b), s.heads_q, s.heads_kv, s.head_dim};
        const ReferenceGradients want = flashsci::test::reference_gradients(
            reference_problem(c, sequence), gathered(FLASHSCI_TENSOR_Q, b), gathered(FLASHSCI_TENSOR_K, b),
            gathered(FLASHSCI_TENSOR_V, b), gathered(FLASHSCI_TENSOR_DO, b));
        CHECK(relative_error(gathered(FLASHSCI_TENSOR_DQ, b), want.dq) <= tolerance(c.dtype));
        CHECK(relative_error(gathered(FLASHSCI_TENSOR_DK, b), want.dk) <= tolerance(c.dtype));
        CHECK(relative_error(gathered(FLASHSCI_TENSOR_DV, b), want.dv) <= tolerance(c.dtype));
        written_q += want.dq.size(), written_k += want.dk.size();
    }
    CHECK(written_elements(t[FLASHSCI_TENSOR_DQ]) == written_q);
    CHECK(written_elements(t[FLASHSCI_TENSOR_DK]) == written_k);
    CHECK(written_elements(t[FLASHSCI_TENSOR_DV]) == written_k);

    std::vector<HostTensor> first;
    for (flashsci_tensor_t g : {FLASHSCI_TENSOR_DQ, FLASHSCI_TENSOR_DK, FLASHSCI_TENSOR_DV})
        first.push_back(t[g]), t[g].poison();
    REQUIRE(backward() == FLASHSCI_STATUS_SUCCESS);
    size_t n = 0;
    for (flashsci_tensor_t g : {FLASHSCI_TENSOR_DQ, FLASHSCI_TENSOR_DK, FLASHSCI_TENSOR_DV}) {
        CHECK(std::memcmp(first[n].data(), t[g].data(), first[n].size_bytes()) == 0);
        ++n;
    }
    flashsci_plan_destroy(plan);
}

}  // namespace

TEST_CASE("CPU varlen backward: mixed lengths, an empty sequence and one without keys, every dtype and mask",
          "[cpu][backward][varlen]") {
    // Sequence 1 has no queries (its keys get dk = dv = 0); sequence 3 has no keys (its rows get dq = 0).
    const std::vector<int32_t> lens_q{17, 0, 129, 5, 1, 64};
    const std::vector<int32_t> lens_k{23, 9, 127, 0, 1, 40};
    for (flashsci_dtype_t dtype : kAllDtypes)
        for (flashsci_mask_t mask : kAllMasks) {
            Case c = dense(dtype, {0, 0, 0, 4, 2, 40}, mask);
            check_varlen(c, lens_q, lens_k);
        }
}

TEST_CASE("CPU varlen backward: window, softcap, ALiBi and strides per sequence",
          "[cpu][backward][varlen][window][softcap][alibi]") {
    const std::vector<int32_t> lens_q{33, 0, 70, 2};
    const std::vector<int32_t> lens_k{20, 5, 90, 0};
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c = dense(dtype, {0, 0, 0, 4, 1, 64}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
        c.window_left = 12, c.window_right = 3, c.softcap = kSoftcap, c.alibi = true, c.strided = true;
        check_varlen(c, lens_q, lens_k);
    }
}
