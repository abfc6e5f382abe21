// The CPU backend's paths (FLASHSCI_CPU_ISA): each one this machine has, forced, against fp64 and against the
// reference path, on fresh random inputs; the kernel name shows the path; a path the CPU lacks is refused.
// CMake also reruns the whole CPU suite once per path (tests/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "reference.h"
#include "tensors.h"

using namespace flashsci::test;

namespace {

constexpr const char* kIsaVariable = "FLASHSCI_CPU_ISA";
constexpr const char* kFastPaths[] = {"portable", "avx2", "avx512"};
constexpr flashsci_dtype_t kDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};

// fp32 against fp64: max |O - O_ref| / max |O_ref| and the LSE's absolute error; 16-bit outputs round to ~4e-3.
constexpr double kFp32Tolerance = 1e-5;
constexpr double kFp32LseTolerance = 1e-5;
constexpr double kHalfTolerance = 1e-2;
constexpr double kHalfLseTolerance = 1e-3;

// Sets an environment variable (unsets it for nullptr) for its lifetime and restores what was there.
class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) had_old_ = true, old_ = old;
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~ScopedEnvironment() {
        if (had_old_) setenv(name_, old_.c_str(), 1);
        else unsetenv(name_);
    }
    ScopedEnvironment(const ScopedEnvironment&) = delete;
    ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

private:
    const char* name_;
    bool had_old_ = false;
    std::string old_;
};

// FLASHSCI_CPU_ISA for its lifetime.
class ScopedIsa : public ScopedEnvironment {
public:
    explicit ScopedIsa(const char* value) : ScopedEnvironment(kIsaVariable, value) {}
};

struct Case {
    Shape shape;
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_FLOAT32;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    int64_t window_left = -1, window_right = -1;
    float softcap = 0.0f;
    bool alibi = false;
    bool bhsd = false;  // q, k, v, o as [batch, heads, seqlen, head_dim]
    float range = 1.0f;
};

std::string describe(const Case& c) {
    const Shape& s = c.shape;
    return "batch " + std::to_string(s.batch) + ", seqlen " + std::to_string(s.seqlen_q) + "/" +
           std::to_string(s.seqlen_k) + ", heads " + std::to_string(s.heads_q) + "/" + std::to_string(s.heads_kv) +
           ", head_dim " + std::to_string(s.head_dim) + ", " + dtype_name(c.dtype) + ", mask " +
           std::to_string(int(c.mask)) + ", window (" + std::to_string(c.window_left) + ", " +
           std::to_string(c.window_right) + "), softcap " + std::to_string(c.softcap) + ", alibi " +
           std::to_string(c.alibi) + (c.bhsd ? ", bhsd" : ", contiguous") + ", range " + std::to_string(c.range);
}

Layout layout(const Case& c, int64_t seqlen, int64_t heads) {
    return c.bhsd ? bhsd_layout(seqlen, heads, c.shape.head_dim) : contiguous_layout(seqlen, heads, c.shape.head_dim);
}

std::vector<float> alibi_slopes(int64_t heads) {
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-8.0 * double(h) / double(heads))));
    return slopes;
}

struct Inputs {
    HostTensor q, k, v;
};

struct Output {
    HostTensor o;
    std::vector<float> lse;
};

// Runs c on a fresh CPU plan under FLASHSCI_CPU_ISA = isa; checks the kernel name.
Output run(const Case& c, const Inputs& in, const char* isa) {
    const ScopedIsa scope(isa);
    const Shape& s = c.shape;
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim) ==
            FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_dtype(plan, c.dtype) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_mask(plan, c.mask) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_window(plan, c.window_left, c.window_right) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_softcap(plan, c.softcap) == FLASHSCI_STATUS_SUCCESS);
    const std::vector<float> slopes = alibi_slopes(s.heads_q);
    REQUIRE(flashsci_plan_set_alibi_slopes(plan, c.alibi ? slopes.data() : nullptr) == FLASHSCI_STATUS_SUCCESS);
    const Layout lq = layout(c, s.seqlen_q, s.heads_q), lk = layout(c, s.seqlen_k, s.heads_kv);
    for (flashsci_tensor_t t : {FLASHSCI_TENSOR_Q, FLASHSCI_TENSOR_O})
        REQUIRE(flashsci_plan_set_strides(plan, t, lq.batch, lq.seq, lq.head) == FLASHSCI_STATUS_SUCCESS);
    for (flashsci_tensor_t t : {FLASHSCI_TENSOR_K, FLASHSCI_TENSOR_V})
        REQUIRE(flashsci_plan_set_strides(plan, t, lk.batch, lk.seq, lk.head) == FLASHSCI_STATUS_SUCCESS);
    const char* name = nullptr;
    REQUIRE(flashsci_plan_get_kernel_name(plan, &name) == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::string(name) == std::string("cpu_") + isa);
    Output out{HostTensor(c.dtype, in.q.count()), std::vector<float>(size_t(s.batch * s.heads_q * s.seqlen_q))};
    out.o.poison();
    std::fill(out.lse.begin(), out.lse.end(), std::nanf(""));
    const flashsci_status_t status =
        flashsci_forward(plan, in.q.data(), in.k.data(), in.v.data(), out.o.data(), out.lse.data(), nullptr, 0, nullptr);
    INFO("flashsci_last_error: " << flashsci_last_error());
    flashsci_plan_destroy(plan);
    REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
    return out;
}

// The fast paths this machine runs, as FLASHSCI_CPU_ISA names them.
std::vector<const char*> available_fast_paths() {
    std::vector<const char*> paths;
    for (const char* isa : kFastPaths) {
        const ScopedIsa scope(isa);
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_shape(plan, 1, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32) == FLASHSCI_STATUS_SUCCESS);
        const char* name = nullptr;
        if (flashsci_plan_get_kernel_name(plan, &name) == FLASHSCI_STATUS_SUCCESS) paths.push_back(isa);
        flashsci_plan_destroy(plan);
    }
    return paths;
}

struct Errors {
    double out = 0, out_reference = 0, lse = 0;  // against fp64
    double out_vs_reference_path = 0, lse_vs_reference_path = 0;
    int64_t empty_row_mismatches = 0;
};

Errors compare(const Case& c, const Inputs& in, const Output& fast, const Output& plain) {
    const Shape& s = c.shape;
    const Layout lq = layout(c, s.seqlen_q, s.heads_q), lk = layout(c, s.seqlen_k, s.heads_kv);
    const std::vector<float> slopes = alibi_slopes(s.heads_q);
    Errors e;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const Features f{c.window_left, c.window_right, c.softcap, c.alibi ? slopes[size_t(h)] : 0.0};
                const RowResult want = reference_row(s, c.mask, 1.0 / std::sqrt(double(s.head_dim)), in.q, lq, in.k,
                                                     lk, in.v, lk, b, h, i, f);
                const size_t l = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                if (std::isinf(want.lse)) {  // a row without keys: O = +0 and LSE = -inf exactly
                    bool empty_ok = fast.lse[l] == want.lse;
                    for (int64_t d = 0; d < s.head_dim; ++d) {
                        const double got = fast.o.get(lq.offset(b, i, h) + size_t(d));
                        empty_ok = empty_ok && got == 0.0 && !std::signbit(got);
                    }
                    e.empty_row_mismatches += !empty_ok;
                    continue;
                }
                e.lse = std::max(e.lse, std::isnan(fast.lse[l]) ? INFINITY : std::fabs(fast.lse[l] - want.lse));
                e.lse_vs_reference_path = std::max(e.lse_vs_reference_path, std::fabs(double(fast.lse[l]) - plain.lse[l]));
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t at = lq.offset(b, i, h) + size_t(d);
                    const double got = fast.o.get(at);
                    e.out = std::max(e.out, std::isnan(got) ? INFINITY : std::fabs(got - want.out[size_t(d)]));
                    e.out_reference = std::max(e.out_reference, std::fabs(want.out[size_t(d)]));
                    e.out_vs_reference_path = std::max(e.out_vs_reference_path, std::fabs(got - plain.o.get(at)));
                }
            }
    return e;
}

// Runs c on the reference path and on every fast path; checks each against fp64 and the reference path.
void check_every_path(const Case& c, std::mt19937_64& rng) {
    INFO(describe(c));
    const Shape& s = c.shape;
    const Layout lq = layout(c, s.seqlen_q, s.heads_q), lk = layout(c, s.seqlen_k, s.heads_kv);
    const size_t q_count = lq.offset(s.batch - 1, s.seqlen_q - 1, s.heads_q - 1) + size_t(s.head_dim);
    const size_t kv_count = lk.offset(s.batch - 1, s.seqlen_k - 1, s.heads_kv - 1) + size_t(s.head_dim);
    Inputs in{HostTensor(c.dtype, q_count), HostTensor(c.dtype, kv_count), HostTensor(c.dtype, kv_count)};
    in.q.fill_random(rng, c.range), in.k.fill_random(rng, c.range), in.v.fill_random(rng, 1.0f);
    const Output plain = run(c, in, "reference");
    const bool fp32 = c.dtype == FLASHSCI_DTYPE_FLOAT32;
    for (const char* isa : available_fast_paths()) {
        INFO("FLASHSCI_CPU_ISA=" << isa);
        const Errors e = compare(c, in, run(c, in, isa), plain);
        INFO("max |O - fp64| " << e.out << " (max |O| " << e.out_reference << "), LSE error " << e.lse
                               << "; against the reference path: O " << e.out_vs_reference_path << ", LSE "
                               << e.lse_vs_reference_path);
        const double tolerance = (fp32 ? kFp32Tolerance : kHalfTolerance) * std::max(e.out_reference, 1e-30);
        CHECK(e.out <= tolerance);
        CHECK(e.out_vs_reference_path <= 2 * tolerance);
        CHECK(e.lse <= (fp32 ? kFp32LseTolerance : kHalfLseTolerance));
        CHECK(e.lse_vs_reference_path <= 2 * (fp32 ? kFp32LseTolerance : kHalfLseTolerance));
        CHECK(e.empty_row_mismatches == 0);
    }
}

Shape square(int64_t seqlen, int64_t head_dim) { return {2, seqlen, seqlen, 4, 2, head_dim}; }

}  // namespace

// For tests/CMakeLists.txt: passes where FLASHSCI_CPU_ISA, as set, names a path this machine runs.
TEST_CASE("CPU paths: the path FLASHSCI_CPU_ISA names is available", "[.isa-available]") {
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_shape(plan, 1, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32) == FLASHSCI_STATUS_SUCCESS);
    const char* name = nullptr;
    const flashsci_status_t status = flashsci_plan_get_kernel_name(plan, &name);
    flashsci_plan_destroy(plan);
    REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
}

TEST_CASE("CPU paths: FLASHSCI_CPU_ISA picks the path, the kernel name shows it, unknown values are refused",
          "[cpu][isa]") {
    const std::vector<const char*> paths = available_fast_paths();
    REQUIRE(!paths.empty());
    CHECK(std::string(paths.front()) == "portable");  // every CPU has the portable path
    auto kernel_name = [](const char* isa, const char** name) {
        const ScopedIsa scope(isa);
        flashsci_plan_t plan = nullptr;
        REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_shape(plan, 1, 4, 4, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16) == FLASHSCI_STATUS_SUCCESS);
        const flashsci_status_t status = flashsci_plan_get_kernel_name(plan, name);
        std::vector<uint16_t> q(32, 0x3f80), o(32, 0xffff);
        const flashsci_status_t forward =
            flashsci_forward(plan, q.data(), q.data(), q.data(), o.data(), nullptr, nullptr, 0, nullptr);
        CHECK(forward == status);
        if (status != FLASHSCI_STATUS_SUCCESS) CHECK(std::all_of(o.begin(), o.end(), [](uint16_t x) { return x == 0xffff; }));
        flashsci_plan_destroy(plan);
        return status;
    };
    const char* name = nullptr;
    REQUIRE(kernel_name("reference", &name) == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::string(name) == "cpu_reference");
    REQUIRE(kernel_name(nullptr, &name) == FLASHSCI_STATUS_SUCCESS);  // unset: the fastest path
    CHECK(std::string(name) == std::string("cpu_") + paths.back());
    REQUIRE(kernel_name("", &name) == FLASHSCI_STATUS_SUCCESS);
    CHECK(std::string(name) == std::string("cpu_") + paths.back());
    CHECK(kernel_name("sse9", &name) == FLASHSCI_STATUS_NOT_SUPPORTED);
    CHECK(std::string(flashsci_last_error()).find("FLASHSCI_CPU_ISA=sse9") != std::string::npos);
    for (const char* isa : kFastPaths)
        if (std::find_if(paths.begin(), paths.end(), [&](const char* p) { return std::string(p) == isa; }) == paths.end()) {
            INFO(isa << " is not available here: refused");
            CHECK(kernel_name(isa, &name) == FLASHSCI_STATUS_NOT_SUPPORTED);
        }
}

TEST_CASE("CPU paths: every fast path matches fp64 and the reference path at odd lengths and every mask",
          "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    const auto lengths = GENERATE(std::make_pair(1, 1), std::make_pair(17, 17), std::make_pair(127, 127),
                                  std::make_pair(129, 129), std::make_pair(17, 129), std::make_pair(129, 17),
                                  std::make_pair(1, 300), std::make_pair(300, 1000));
    for (flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
        for (flashsci_dtype_t dtype : kDtypes) {
            Case c;
            c.shape = {1, lengths.first, lengths.second, 4, 2, 64};
            c.dtype = dtype;
            c.mask = mask;
            check_every_path(c, rng);
        }
}

TEST_CASE("CPU paths: every fast path at every head_dim class, strided", "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    const int64_t head_dim = GENERATE(8, 16, 24, 40, 64, 72, 96, 128, 136, 192, 256);
    for (flashsci_dtype_t dtype : kDtypes) {
        Case c;
        c.shape = {2, 70, 150, 4, 1, head_dim};
        c.dtype = dtype;
        c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
        c.bhsd = head_dim % 16 == 8;
        check_every_path(c, rng);
    }
}

TEST_CASE("CPU paths: every fast path with windows, softcap and ALiBi", "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    const auto window = GENERATE(std::make_pair(-1, -1), std::make_pair(0, 0), std::make_pair(40, -1),
                                 std::make_pair(-1, 8), std::make_pair(100, 3));
    for (flashsci_dtype_t dtype : kDtypes) {
        Case c;
        c.shape = {1, 300, 257, 6, 2, 48};
        c.dtype = dtype;
        c.mask = FLASHSCI_MASK_CAUSAL;
        c.window_left = window.first, c.window_right = window.second;
        c.softcap = 5.0f;
        c.alibi = true;
        c.range = 3.0f;
        check_every_path(c, rng);
    }
}

// Scores up to ~1e3: fp32 rows past kFp32ScoreBound take the fp64 scores, and stay at fp32 accuracy.
TEST_CASE("CPU paths: every fast path keeps fp32 accuracy on large scores", "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    for (flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL}) {
        Case c;
        c.shape = square(200, 128);
        c.mask = mask;
        c.range = 8.0f;
        check_every_path(c, rng);
        c.softcap = 30.0f;  // the fp64 scores through softcap, ALiBi and a window
        c.alibi = true;
        c.window_left = 150, c.window_right = 20;
        check_every_path(c, rng);
    }
}

// Blocks per work item shrink with the thread count; a row's arithmetic must not change with them.
TEST_CASE("CPU paths: every fast path gives the same bits at any FLASHSCI_NUM_THREADS", "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    for (flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
        for (flashsci_dtype_t dtype : {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32}) {
            Case c;
            c.shape = {2, 700, 1300, 4, 2, 72};
            c.dtype = dtype;
            c.mask = mask;
            INFO(describe(c));
            const Shape& s = c.shape;
            Inputs in{HostTensor(dtype, size_t(s.batch * s.seqlen_q * s.heads_q * s.head_dim)),
                      HostTensor(dtype, size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim)),
                      HostTensor(dtype, size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim))};
            in.q.fill_random(rng), in.k.fill_random(rng), in.v.fill_random(rng);
            for (const char* isa : available_fast_paths()) {
                INFO("FLASHSCI_CPU_ISA=" << isa);
                std::vector<Output> outputs;
                for (const char* threads : {"1", "2", "5"}) {
                    const ScopedEnvironment scope("FLASHSCI_NUM_THREADS", threads);
                    outputs.push_back(run(c, in, isa));
                }
                for (size_t n = 1; n < outputs.size(); ++n) {
                    CHECK(std::memcmp(outputs[0].o.data(), outputs[n].o.data(), outputs[0].o.size_bytes()) == 0);
                    CHECK(std::memcmp(outputs[0].lse.data(), outputs[n].lse.data(), outputs[0].lse.size() * sizeof(float)) == 0);
                }
            }
        }
}
