// flashsci_plan_set_precision on the CPU backend, which computes fp32 exactly in every mode: every value is
// accepted on fp32, fp16 and bf16 plans, a rejected one leaves the plan working as before, fp32 forwards match the
// fp64 reference at fp32 accuracy in every mode and give the same bits whatever the mode, and neither the precision
// nor FLASHSCI_KERNEL (a CUDA setting) moves a CPU plan off its kernel. (The contract's messages are checked in
// test_backward_api.cpp; the CUDA kernels each mode selects in tests/kernels/test_sm80_precision_cuda.cpp.)
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "reference.h"
#include "tensors.h"

using flashsci::test::Features;
using flashsci::test::HostTensor;
using flashsci::test::Layout;
using flashsci::test::Shape;

namespace {

// The CPU backend against fp64 (tests/src/cpu/test_cpu_attention.cpp): O within kFp32Tolerance·max |O_ref|, LSE
// within kFp32LseTolerance·max(1, |LSE_ref|).
constexpr double kFp32Tolerance = 1e-5;
constexpr double kFp32LseTolerance = 1e-4;

constexpr flashsci_precision_t kPrecisions[] = {FLASHSCI_PRECISION_DEFAULT, FLASHSCI_PRECISION_TF32,
                                                FLASHSCI_PRECISION_IEEE};
constexpr flashsci_dtype_t kDtypes[] = {FLASHSCI_DTYPE_FLOAT32, FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16};
constexpr flashsci_mask_t kMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};

#define REQUIRE_OK(call)                                                                               \
    do {                                                                                               \
        const flashsci_status_t status_ = (call);                                                      \
        INFO(#call << ": " << flashsci_status_string(status_) << ": " << flashsci_last_error());       \
        REQUIRE(status_ == FLASHSCI_STATUS_SUCCESS);                                                   \
    } while (0)

// Sets an environment variable for a scope (nullptr: unset) and restores what was there.
class ScopedVariable {
public:
    ScopedVariable(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old, had_old_ = true;
        if (value)
            setenv(name, value, 1);
        else
            unsetenv(name);
    }
    ~ScopedVariable() {
        if (had_old_)
            setenv(name_, old_.c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedVariable(const ScopedVariable&) = delete;
    ScopedVariable& operator=(const ScopedVariable&) = delete;

private:
    const char* name_;
    std::string old_;
    bool had_old_ = false;
};

class CpuPlan {
public:
    CpuPlan() { REQUIRE_OK(flashsci_plan_create(&plan_, FLASHSCI_BACKEND_CPU)); }
    ~CpuPlan() { flashsci_plan_destroy(plan_); }
    CpuPlan(const CpuPlan&) = delete;
    CpuPlan& operator=(const CpuPlan&) = delete;
    operator flashsci_plan_t() const { return plan_; }

private:
    flashsci_plan_t plan_ = nullptr;
};

struct Case {
    flashsci_dtype_t dtype;
    Shape shape;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    Features features = {};
    bool alibi = false;  // geometric slopes per query head
};

std::string describe(const Case& c) {
    std::ostringstream s;
    const Shape& sh = c.shape;
    s << flashsci::test::dtype_name(c.dtype) << " batch " << sh.batch << " seqlen " << sh.seqlen_q << "/"
      << sh.seqlen_k << " heads " << sh.heads_q << "/" << sh.heads_kv << " head_dim " << sh.head_dim << " mask "
      << int(c.mask);
    if (c.features.window_left >= 0 || c.features.window_right >= 0)
        s << " window (" << c.features.window_left << ", " << c.features.window_right << ")";
    if (c.features.softcap > 0) s << " softcap " << c.features.softcap;
    if (c.alibi) s << " alibi";
    return s.str();
}

struct Inputs {
    HostTensor q, k, v;
};

// Standard normal, rounded to the dtype: full fp32 mantissas, so a TF32 shortcut would show.
Inputs random_inputs(const Case& c, std::mt19937_64& rng) {
    const Shape& s = c.shape;
    Inputs in{HostTensor(c.dtype, size_t(s.batch * s.seqlen_q * s.heads_q * s.head_dim)),
              HostTensor(c.dtype, size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim)),
              HostTensor(c.dtype, size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim))};
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (HostTensor* t : {&in.q, &in.k, &in.v})
        for (size_t i = 0; i < t->count(); ++i) t->set(i, normal(rng));
    return in;
}

struct Outputs {
    HostTensor o;
    std::vector<float> lse;
};

void configure(flashsci_plan_t plan, const Case& c, const std::vector<float>& slopes) {
    const Shape& s = c.shape;
    REQUIRE_OK(flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim));
    REQUIRE_OK(flashsci_plan_set_dtype(plan, c.dtype));
    REQUIRE_OK(flashsci_plan_set_mask(plan, c.mask));
    REQUIRE_OK(flashsci_plan_set_window(plan, c.features.window_left, c.features.window_right));
    REQUIRE_OK(flashsci_plan_set_softcap(plan, float(c.features.softcap)));
    REQUIRE_OK(flashsci_plan_set_alibi_slopes(plan, c.alibi ? slopes.data() : nullptr));
}

// One forward of c on a fresh CPU plan set to `precision`, into poisoned outputs.
Outputs forward(const Case& c, const Inputs& in, flashsci_precision_t precision, const std::vector<float>& slopes) {
    CpuPlan plan;
    REQUIRE_OK(flashsci_plan_set_precision(plan, precision));
    configure(plan, c, slopes);
    const Shape& s = c.shape;
    Outputs out{HostTensor(c.dtype, in.q.count()), std::vector<float>(size_t(s.batch * s.heads_q * s.seqlen_q))};
    out.o.poison();
    std::memset(out.lse.data(), 0xff, out.lse.size() * sizeof(float));
    REQUIRE_OK(flashsci_forward(plan, in.q.data(), in.k.data(), in.v.data(), out.o.data(), out.lse.data(), nullptr, 0,
                                nullptr));
    return out;
}

bool same_bits(const Outputs& a, const Outputs& b) {
    return a.o.size_bytes() == b.o.size_bytes() && std::memcmp(a.o.data(), b.o.data(), a.o.size_bytes()) == 0 &&
           a.lse.size() == b.lse.size() && std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0;
}

// Every element of O and LSE against the fp64 reference at fp32 accuracy.
void check_against_reference(const Case& c, const Inputs& in, const Outputs& got, const std::vector<float>& slopes) {
    const Shape& s = c.shape;
    const Layout lq = flashsci::test::contiguous_layout(s.seqlen_q, s.heads_q, s.head_dim);
    const Layout lk = flashsci::test::contiguous_layout(s.seqlen_k, s.heads_kv, s.head_dim);
    const double scale = 1.0 / std::sqrt(double(s.head_dim));
    std::vector<flashsci::test::RowResult> want;
    double max_want = 0;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                Features f = c.features;
                f.alibi_slope = c.alibi ? slopes[size_t(h)] : 0.0;
                want.push_back(flashsci::test::reference_row(s, c.mask, scale, in.q, lq, in.k, lk, in.v, lk, b, h, i, f));
                if (!std::isinf(want.back().lse))
                    for (const double x : want.back().out) max_want = std::max(max_want, std::fabs(x));
            }
    double max_error = 0, max_lse_error = 0;
    size_t bad = 0;
    std::string first;
    size_t row = 0;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i, ++row) {
                const flashsci::test::RowResult& r = want[row];
                const bool blind = std::isinf(r.lse);  // no key: O = 0 and LSE = -inf
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const double g = got.o.get(lq.offset(b, i, h) + size_t(d)), w = blind ? 0.0 : r.out[size_t(d)];
                    const double error = !std::isfinite(g) ? INFINITY : blind ? (g == 0.0 ? 0.0 : INFINITY)
                                                                              : std::fabs(g - w);
                    max_error = std::max(max_error, error);
                    if (!(error <= kFp32Tolerance * max_want) && bad++ == 0) {
                        std::ostringstream m;
                        m.precision(9);
                        m << "O[" << b << ", " << i << ", " << h << ", " << d << "] = " << g << ", fp64 " << w;
                        first = m.str();
                    }
                }
                const double g = got.lse[size_t((b * s.heads_q + h) * s.seqlen_q + i)];
                const double error = blind ? (g == r.lse ? 0.0 : INFINITY)
                                           : std::fabs(g - r.lse) / std::max(1.0, std::fabs(r.lse));
                max_lse_error = std::max(max_lse_error, std::isnan(error) ? INFINITY : error);
            }
    INFO(bad << " elements of O off; first: " << first << "; max O error " << max_error << " (max |O| " << max_want
             << "), max LSE error " << max_lse_error);
    CHECK(bad == 0);
    CHECK(max_lse_error <= kFp32LseTolerance);
}

std::string cpu_kernel_name(const Case& c, flashsci_precision_t precision) {
    CpuPlan plan;
    configure(plan, c, {});
    REQUIRE_OK(flashsci_plan_set_precision(plan, precision));
    const char* name = nullptr;
    REQUIRE_OK(flashsci_plan_get_kernel_name(plan, &name));
    return name;
}

}  // namespace

TEST_CASE("set_precision takes every value on fp32, fp16 and bf16 CPU plans, before or after the dtype",
          "[api][precision]") {
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_precision_t precision : kPrecisions) {
            INFO(flashsci::test::dtype_name(dtype) << ", precision " << int(precision));
            CpuPlan before;
            CHECK(flashsci_plan_set_precision(before, precision) == FLASHSCI_STATUS_SUCCESS);
            REQUIRE_OK(flashsci_plan_set_shape(before, 1, 3, 5, 2, 1, 16));
            REQUIRE_OK(flashsci_plan_set_dtype(before, dtype));
            CpuPlan after;
            REQUIRE_OK(flashsci_plan_set_shape(after, 1, 3, 5, 2, 1, 16));
            REQUIRE_OK(flashsci_plan_set_dtype(after, dtype));
            CHECK(flashsci_plan_set_precision(after, precision) == FLASHSCI_STATUS_SUCCESS);
            // The same value twice, and every other after it, are accepted too.
            for (const flashsci_precision_t next : kPrecisions)
                CHECK(flashsci_plan_set_precision(after, next) == FLASHSCI_STATUS_SUCCESS);
            CHECK(flashsci_plan_set_precision(after, precision) == FLASHSCI_STATUS_SUCCESS);
        }
}

TEST_CASE("a rejected precision leaves a CPU plan computing what it computed", "[api][precision]") {
    const Case c{FLASHSCI_DTYPE_FLOAT32, {2, 17, 33, 4, 2, 64}, FLASHSCI_MASK_CAUSAL};
    const uint64_t seed = flashsci::test::fresh_seed();
    INFO(describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Inputs in = random_inputs(c, rng);
    const Outputs want = forward(c, in, FLASHSCI_PRECISION_TF32, {});
    CpuPlan plan;
    configure(plan, c, {});
    REQUIRE_OK(flashsci_plan_set_precision(plan, FLASHSCI_PRECISION_TF32));
    const char* kernel_before = nullptr;
    REQUIRE_OK(flashsci_plan_get_kernel_name(plan, &kernel_before));
    for (const int bad : {-1, 3, INT_MIN, INT_MAX})
        CHECK(flashsci_plan_set_precision(plan, static_cast<flashsci_precision_t>(bad)) ==
              FLASHSCI_STATUS_INVALID_VALUE);
    const char* kernel_after = nullptr;
    REQUIRE_OK(flashsci_plan_get_kernel_name(plan, &kernel_after));
    CHECK(std::string(kernel_after) == kernel_before);
    Outputs got{HostTensor(c.dtype, in.q.count()), std::vector<float>(want.lse.size())};
    got.o.poison();
    REQUIRE_OK(flashsci_forward(plan, in.q.data(), in.k.data(), in.v.data(), got.o.data(), got.lse.data(), nullptr, 0,
                                nullptr));
    CHECK(same_bits(got, want));
}

TEST_CASE("CPU fp32 forwards match fp64 at fp32 accuracy in every precision, with the same bits in each",
          "[cpu][precision]") {
    std::vector<Case> cases;
    for (const int64_t head_dim : {8, 64, 72, 128})
        for (const int64_t seqlen : {1, 17, 129})
            for (const flashsci_mask_t mask : kMasks)
                cases.push_back({FLASHSCI_DTYPE_FLOAT32, {2, seqlen, seqlen, 2, 1, head_dim}, mask});
    for (const flashsci_mask_t mask : kMasks) {
        cases.push_back({FLASHSCI_DTYPE_FLOAT32, {1, 1000, 1000, 1, 1, 64}, mask});
        cases.push_back({FLASHSCI_DTYPE_FLOAT32, {1, 17, 300, 8, 2, 200}, mask});
        cases.push_back({FLASHSCI_DTYPE_FLOAT32, {2, 129, 77, 6, 2, 256}, mask, {16, 5, 30.0, 0.0}, true});
    }
    for (const Case& c : cases) {
        const uint64_t seed = flashsci::test::fresh_seed();
        INFO(describe(c) << ", seed " << seed);
        std::mt19937_64 rng(seed);
        const Inputs in = random_inputs(c, rng);
        const std::vector<float> slopes = flashsci::test::geometric_alibi_slopes(c.shape.heads_q);
        const Outputs first = forward(c, in, kPrecisions[0], slopes);
        check_against_reference(c, in, first, slopes);
        for (const flashsci_precision_t precision : kPrecisions) {
            INFO("precision " << int(precision) << " against " << int(kPrecisions[0]));
            CHECK(same_bits(forward(c, in, precision, slopes), first));
        }
    }
}

TEST_CASE("CPU fp16 and bf16 forwards give the same bits in every precision", "[cpu][precision]") {
    for (const flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16})
        for (const flashsci_mask_t mask : kMasks) {
            const Case c{dtype, {2, 129, 77, 4, 2, 72}, mask};
            const uint64_t seed = flashsci::test::fresh_seed();
            INFO(describe(c) << ", seed " << seed);
            std::mt19937_64 rng(seed);
            const Inputs in = random_inputs(c, rng);
            const Outputs first = forward(c, in, FLASHSCI_PRECISION_DEFAULT, {});
            for (const flashsci_precision_t precision : {FLASHSCI_PRECISION_TF32, FLASHSCI_PRECISION_IEEE}) {
                INFO("precision " << int(precision));
                CHECK(same_bits(forward(c, in, precision, {}), first));
            }
        }
}

// FLASHSCI_KERNEL names CUDA kernels; a CPU plan keeps its own, whatever the value and the precision.
TEST_CASE("neither FLASHSCI_KERNEL nor the precision moves a CPU plan off its kernel", "[api][precision]") {
    const Case c{FLASHSCI_DTYPE_FLOAT32, {1, 129, 129, 2, 2, 128}, FLASHSCI_MASK_CAUSAL};
    std::string baseline;
    {
        const ScopedVariable unset("FLASHSCI_KERNEL", nullptr);
        baseline = cpu_kernel_name(c, FLASHSCI_PRECISION_DEFAULT);
    }
    CHECK(baseline.rfind("cpu_", 0) == 0);
    for (const char* value : {"sm80", "sm90", "general", "decode", "", "SM80", "no such kernel"})
        for (const flashsci_precision_t precision : kPrecisions) {
            INFO("FLASHSCI_KERNEL=" << value << ", precision " << int(precision));
            const ScopedVariable forced("FLASHSCI_KERNEL", value);  // read at plan creation
            CHECK(cpu_kernel_name(c, precision) == baseline);
        }
}

// Without a usable GPU (or in a build without CUDA) a CUDA plan is refused before any precision matters, and an
// AUTO plan resolves to the CPU, where every precision runs.
TEST_CASE("without a GPU, CUDA plans are refused and AUTO plans take every precision on the CPU",
          "[api][precision]") {
    flashsci_plan_t cuda = nullptr;
    const flashsci_status_t status = flashsci_plan_create(&cuda, FLASHSCI_BACKEND_CUDA);
    if (status == FLASHSCI_STATUS_SUCCESS) {
        flashsci_plan_destroy(cuda);
        WARN("SKIPPED: this machine has a usable GPU (the [gpu] tests check the CUDA kernels each precision selects)");
        return;
    }
    CHECK(status == FLASHSCI_STATUS_NO_DEVICE);
    CHECK(std::string(flashsci_last_error()).find("flashsci_plan_create") != std::string::npos);
    flashsci_plan_t automatic = nullptr;
    REQUIRE_OK(flashsci_plan_create(&automatic, FLASHSCI_BACKEND_AUTO));
    flashsci_backend_t backend = FLASHSCI_BACKEND_AUTO;
    CHECK(flashsci_plan_get_backend(automatic, &backend) == FLASHSCI_STATUS_SUCCESS);
    CHECK(backend == FLASHSCI_BACKEND_CPU);
    for (const flashsci_precision_t precision : kPrecisions)
        CHECK(flashsci_plan_set_precision(automatic, precision) == FLASHSCI_STATUS_SUCCESS);
    flashsci_plan_destroy(automatic);
}
