// fp32 plans in each precision (flashsci_plan_set_precision) against the CPU backend on the same fresh random normal
// inputs (full fp32 mantissas): DEFAULT selects sm80_*_f32_3xtf32 on compute capability 8.0+ and keeps the fp32
// tolerance of gpu_cases.h, at least kThreeProductGain times closer than TF32 (the three products are really summed);
// TF32 selects sm80_*_f32_tf32, within kTf32Tolerance and measurably off on long rows (it is not 3xTF32 in
// disguise); IEEE selects cuda_general at the fp32 tolerance. Older GPUs and builds without the sm_80 forward run
// every mode on cuda_general at the fp32 tolerance. The fp32 backward is the general one in every mode, at the
// backward's fp32 tolerance. Each check names its case, precision and seed when it fails.
#include "backward_cases.h"
#include "feature_cases.h"
#include "gpu_cases.h"
#include "varlen_gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;
namespace vl = flashsci::test::varlen;
namespace bw = flashsci::test::gpu::backward;

namespace {

// One TF32 pass: operands rounded to 11 significant bits (2^-11 relative), so O within ~1e-3 of max |O|.
constexpr double kTf32Tolerance = 3e-3;
constexpr double kTf32LseTolerance = 3e-3;  // |gpu − ref| / max(1, |ref|)
// On rows of at least kLongRow keys with full-mantissa inputs, one TF32 pass errs by more than kTf32Floor·max |O|.
constexpr double kTf32Floor = 1e-5;
constexpr int64_t kLongRow = 256;
// 3xTF32 is at least this many times closer to the reference than one TF32 pass on the same inputs.
constexpr double kThreeProductGain = 10.0;

constexpr flashsci_precision_t kPrecisions[] = {FLASHSCI_PRECISION_DEFAULT, FLASHSCI_PRECISION_TF32,
                                                FLASHSCI_PRECISION_IEEE};
constexpr int64_t kHeadDims[] = {8, 64, 72, 128, 200, 256};
constexpr int64_t kSeqlens[] = {1, 17, 129, 1000};

int64_t bucket_of(int64_t head_dim) { return head_dim <= 64 ? 64 : head_dim <= 128 ? 128 : 256; }

// Whether the sm_80 forward runs a head_dim on this device and build (a bf16 plan forced onto it is accepted).
bool sm80_holds(int64_t head_dim) {
    const ScopedEnvironment forced("FLASHSCI_KERNEL", "sm80");
    Plan plan(FLASHSCI_BACKEND_CUDA);
    REQUIRE_FLASHSCI(flashsci_plan_set_shape(plan, 1, 128, 128, 1, 1, head_dim));
    REQUIRE_FLASHSCI(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16));
    const char* kernel = nullptr;
    return flashsci_plan_get_kernel_name(plan, &kernel) == FLASHSCI_STATUS_SUCCESS;
}

// The forward kernel an fp32 plan of head_dim must select in `precision`.
std::string expected_kernel(flashsci_precision_t precision, int64_t head_dim) {
    if (precision == FLASHSCI_PRECISION_IEEE || !sm80_holds(head_dim)) return "cuda_general";
    return "sm80_hd" + std::to_string(bucket_of(head_dim)) +
           (precision == FLASHSCI_PRECISION_TF32 ? "_f32_tf32" : "_f32_3xtf32");
}

// Says where the tensor-core modes cannot be checked (the test then holds every mode to cuda_general).
void warn_without_sm80() {
    if (!sm80_available())
        WARN("no sm_80 forward on this device or build: every precision is checked on cuda_general only");
}

// Standard normal, rounded to fp32: full mantissas, so TF32 rounding shows.
void fill_normal(HostTensor& t, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (size_t i = 0; i < t.count(); ++i) t.set(i, normal(rng));
}

// The largest errors of a forward against the CPU backend: O relative to max |O_ref|, LSE relative to
// max(1, |LSE_ref|); `broken` counts non-finite outputs, unwritten ones and rows without keys that are not 0 / -inf.
struct Errors {
    double o = 0, lse = 0;
    std::string worst_o, worst_lse;
    Mismatches broken;
};

Errors measure(const Case& c, const Placement& pl, const Outputs& gpu, const Outputs& cpu) {
    const Shape& s = c.shape;
    double max_want = 0;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < s.seqlen_q; ++i)
            for (int64_t h = 0; h < s.heads_q; ++h)
                for (int64_t d = 0; d < s.head_dim; ++d)
                    max_want = std::max(max_want, std::fabs(cpu.o.get(pl.o.offset(b, i, h) + size_t(d))));
    Errors e;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < s.seqlen_q; ++i) {
            const bool blind = row_is_blind(c, i);
            for (int64_t h = 0; h < s.heads_q; ++h) {
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t idx = pl.o.offset(b, i, h) + size_t(d);
                    const double got = gpu.o.get(idx), want = cpu.o.get(idx);
                    const auto here = [&] { return where("O", b, i, h, got, want) + " at column " + std::to_string(d); };
                    e.broken.add(std::isfinite(got) && (!blind || got == 0.0), here);
                    const double error = max_want > 0 ? std::fabs(got - want) / max_want : std::fabs(got - want);
                    if (error > e.o) e.o = error, e.worst_o = here();
                }
                if (!c.with_lse) continue;
                const size_t idx = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                const double got = gpu.lse[idx], want = cpu.lse[idx];
                const auto here = [&] { return where("LSE", b, i, h, got, want); };
                if (blind) {
                    e.broken.add(lse_close(true, got, want), here);
                } else {
                    e.broken.add(std::isfinite(got), here);
                    const double error = std::fabs(got - want) / std::max(1.0, std::fabs(want));
                    if (error > e.lse) e.lse = error, e.worst_lse = here();
                }
            }
        }
    return e;
}

// One dense case on fresh normal inputs in every precision: the kernel each selects, its accuracy against the CPU
// backend, and (where the tensor-core modes run) DEFAULT's gain over TF32.
void check_precisions(Case c) {
    REQUIRE(c.dtype == FLASHSCI_DTYPE_FLOAT32);
    const uint64_t seed = fresh_seed();
    c.precision = FLASHSCI_PRECISION_DEFAULT;
    INFO(describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Placement pl = place(c);
    HostTensor in(c.dtype, pl.input_count);
    fill_normal(in, rng);
    const Outputs cpu = run_cpu(c, pl, in);

    double error_o[3] = {};
    bool tensor_cores = false;
    for (const flashsci_precision_t precision : kPrecisions) {
        c.precision = precision;
        const std::string kernel = expected_kernel(precision, c.shape.head_dim);
        INFO("precision " << precision_name(precision) << ", kernel " << kernel);
        const Outputs gpu = run_cuda({"", kernel.c_str()}, c, pl, in);
        const Errors e = measure(c, pl, gpu, cpu);
        INFO("max O error " << e.o << " of max |O| (" << e.worst_o << "), max LSE error " << e.lse << " ("
                            << e.worst_lse << ")");
        error_o[precision] = e.o;
        if (precision == FLASHSCI_PRECISION_TF32 && kernel != "cuda_general") {
            tensor_cores = true;
            INFO(e.broken.count() << " broken outputs; first: " << e.broken.first());
            CHECK(e.broken.count() == 0);
            CHECK(e.o <= kTf32Tolerance);
            CHECK(e.lse <= kTf32LseTolerance);
            if (c.shape.seqlen_k >= kLongRow) CHECK(e.o > kTf32Floor);
        } else {
            compare(c, pl, gpu, cpu);  // element by element at the fp32 tolerance, padding untouched
        }
    }
    if (tensor_cores) {
        INFO("max O error relative to max |O|: DEFAULT " << error_o[FLASHSCI_PRECISION_DEFAULT] << ", TF32 "
                                                         << error_o[FLASHSCI_PRECISION_TF32]);
        CHECK(error_o[FLASHSCI_PRECISION_DEFAULT] * kThreeProductGain <= error_o[FLASHSCI_PRECISION_TF32]);
    }
}

}  // namespace

TEST_CASE("fp32 precision: every mode, head dim and mask at odd seqlens selects its kernel and keeps its accuracy",
          "[gpu][sm80][precision]") {
    warn_without_sm80();
    for (const int64_t head_dim : kHeadDims)
        for (const int64_t seqlen : kSeqlens)
            for (const flashsci_mask_t mask : kMasks)
                check_precisions({FLASHSCI_DTYPE_FLOAT32, {2, seqlen, seqlen, 2, 1, head_dim}, mask});
}

TEST_CASE("fp32 precision: unequal seqlens, GQA and MQA, a window, softcap and ALiBi", "[gpu][sm80][precision]") {
    warn_without_sm80();
    for (const int64_t head_dim : {64, 128, 256})
        for (const flashsci_mask_t mask : kMasks) {
            check_precisions({FLASHSCI_DTYPE_FLOAT32, {1, 17, 1000, 2, 2, head_dim}, mask});
            check_precisions({FLASHSCI_DTYPE_FLOAT32, {1, 1000, 129, 2, 2, head_dim}, mask});
            check_precisions({FLASHSCI_DTYPE_FLOAT32, {2, 129, 300, 8, 2, head_dim}, mask});
            check_precisions({FLASHSCI_DTYPE_FLOAT32, {1, 300, 129, 5, 1, head_dim}, mask});
            check_precisions(windowed(FLASHSCI_DTYPE_FLOAT32, {2, 300, 300, 4, 2, head_dim}, mask, {64, 17}));
            Case capped{FLASHSCI_DTYPE_FLOAT32, {2, 300, 300, 4, 2, head_dim}, mask};
            capped.softcap = kSoftcap;
            check_precisions(capped);
            Case everything = windowed(FLASHSCI_DTYPE_FLOAT32, {1, 257, 300, 6, 2, head_dim}, mask, {100, 5});
            everything.softcap = kSoftcap;
            everything.alibi_slopes = alibi_slopes(everything.shape.heads_q);
            check_precisions(everything);
        }
}

TEST_CASE("fp32 precision: an invalid value leaves the plan's kernel as it was", "[gpu][sm80][precision]") {
    warn_without_sm80();
    const Case c{FLASHSCI_DTYPE_FLOAT32, {1, 129, 129, 2, 2, 128}};
    for (const flashsci_precision_t precision : kPrecisions) {
        Plan plan(FLASHSCI_BACKEND_CUDA);
        configure(plan, c, place(c));
        REQUIRE_FLASHSCI(flashsci_plan_set_precision(plan, precision));
        for (const int bad : {-1, 3}) {
            INFO("precision " << precision_name(precision) << " then " << bad);
            CHECK(flashsci_plan_set_precision(plan, static_cast<flashsci_precision_t>(bad)) ==
                  FLASHSCI_STATUS_INVALID_VALUE);
            const char* kernel = nullptr;
            REQUIRE_FLASHSCI(flashsci_plan_get_kernel_name(plan, &kernel));
            CHECK(std::string(kernel) == expected_kernel(precision, c.shape.head_dim));
        }
    }
}

// Forced onto the sm_80 forward, IEEE is refused (it runs fp32 FMAs only), and the other two select it.
TEST_CASE("fp32 precision: FLASHSCI_KERNEL=sm80 refuses IEEE and takes DEFAULT and TF32", "[gpu][sm80][precision]") {
    if (!sm80_available()) return;
    Case c{FLASHSCI_DTYPE_FLOAT32, {2, 129, 129, 2, 2, 64}, FLASHSCI_MASK_CAUSAL};
    for (const flashsci_precision_t precision : kPrecisions) {
        c.precision = precision;
        INFO("precision " << precision_name(precision));
        const ScopedEnvironment forced("FLASHSCI_KERNEL", "sm80");
        Plan plan(FLASHSCI_BACKEND_CUDA);
        configure(plan, c, place(c));
        const char* kernel = nullptr;
        const flashsci_status_t status = flashsci_plan_get_kernel_name(plan, &kernel);
        INFO(flashsci_last_error());
        if (precision == FLASHSCI_PRECISION_IEEE) {
            CHECK(status == FLASHSCI_STATUS_NOT_SUPPORTED);
            CHECK(std::string(flashsci_last_error()).find("FLASHSCI_KERNEL=sm80") != std::string::npos);
        } else {
            REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
            CHECK(std::string(kernel) == expected_kernel(precision, c.shape.head_dim));
        }
    }
}

TEST_CASE("fp32 precision: a varlen batch in every mode", "[gpu][sm80][precision][varlen]") {
    warn_without_sm80();
    vl::Case c;
    c.dtype = FLASHSCI_DTYPE_FLOAT32, c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
    c.lens_q = {1, 17, 129, 1000, 0, 300}, c.lens_k = {17, 1, 300, 1000, 5, 129};
    c.heads_q = 4, c.heads_kv = 2, c.head_dim = 72;
    c.spare_q = 3, c.spare_k = 2;
    for (const flashsci_precision_t precision : kPrecisions) {
        c.precision = precision;
        const std::string kernel = expected_kernel(precision, c.head_dim);
        INFO("kernel " << kernel);
        if (precision != FLASHSCI_PRECISION_TF32 || kernel == "cuda_general") {
            vl::check_case({"", kernel.c_str()}, c);  // the fp32 tolerance
            continue;
        }
        const auto [seed, pl, in] = vl::random_inputs(c);
        INFO(vl::describe(c) << ", seed " << seed);
        const vl::Outputs cpu = vl::run_cpu(c, pl, in);
        const vl::Outputs cuda = vl::run_cuda({"", kernel.c_str()}, c, pl, in);
        const vl::Owned owned = vl::owned_elements(c, pl);
        double max_want = 0, max_error = 0;
        for (size_t e = 0; e < pl.output_count; ++e)
            if (owned.o[e]) max_want = std::max(max_want, std::fabs(cpu.o.get(e)));
        Mismatches broken;
        for (size_t e = 0; e < pl.output_count; ++e) {
            const double got = cuda.o.get(e), want = cpu.o.get(e);
            if (!owned.o[e]) {
                broken.add(vl::element_poisoned(cuda.o, e), [&] { return "written outside O: " + std::to_string(e); });
                continue;
            }
            broken.add(std::isfinite(got), [&] { return "O element " + std::to_string(e) + " is not finite"; });
            max_error = std::max(max_error, std::fabs(got - want) / max_want);
        }
        double max_lse_error = 0;
        for (size_t e = 0; e < pl.lse_count; ++e) {
            const double got = cuda.lse[e], want = cpu.lse[e];
            if (!owned.lse[e]) {
                broken.add(vl::lse_poisoned(cuda.lse[e]), [&] { return "written outside LSE: " + std::to_string(e); });
            } else if (std::isinf(want)) {  // a row without keys
                broken.add(got == want, [&] { return "LSE entry " + std::to_string(e) + " of a row without keys"; });
            } else {
                broken.add(std::isfinite(got), [&] { return "LSE entry " + std::to_string(e) + " is not finite"; });
                max_lse_error = std::max(max_lse_error, std::fabs(got - want) / std::max(1.0, std::fabs(want)));
            }
        }
        INFO(broken.count() << " broken outputs; first: " << broken.first() << "; max O error " << max_error
                            << ", max LSE error " << max_lse_error);
        CHECK(broken.count() == 0);
        CHECK(max_error <= kTf32Tolerance);
        CHECK(max_lse_error <= kTf32LseTolerance);
        CHECK(max_error > kTf32Floor);  // the 1000-key sequence
    }
}

// The backward has no fp32 tensor-core kernel: in every mode it runs the general backward (forced sm80 is refused),
// at the backward's fp32 tolerance, and deterministic runs give the same bits whatever the mode.
TEST_CASE("fp32 precision: the backward is the general one in every mode", "[gpu][sm80][precision][backward]") {
    for (const flashsci_mask_t mask : kMasks)
        for (const int64_t head_dim : {64, 128}) {
            bw::BackwardCase c{FLASHSCI_DTYPE_FLOAT32, {2, 129, 200, 4, 2, head_dim}, mask};
            c.deterministic = true;
            for (const flashsci_precision_t precision : kPrecisions) {
                c.precision = precision;
                bw::check_backward(c, "");
                INFO(bw::describe(c));
                const ScopedEnvironment forced("FLASHSCI_KERNEL", "sm80");
                Plan plan(FLASHSCI_BACKEND_CUDA);
                const bw::Extent e = bw::extent_of(c);
                bw::configure(plan, c, e, bw::place(c, e), {});
                size_t bytes = 0;
                CHECK(flashsci_plan_get_backward_workspace_size(plan, &bytes) == FLASHSCI_STATUS_NOT_SUPPORTED);
            }

            const uint64_t seed = fresh_seed();
            INFO(bw::describe(c) << ", seed " << seed);
            std::mt19937_64 rng(seed);
            const bw::Extent e = bw::extent_of(c);
            const bw::Placement pl = bw::place(c, e);
            const bw::Inputs in = bw::make_inputs(c, e, pl, {}, rng);
            c.precision = FLASHSCI_PRECISION_IEEE;
            const bw::Gradients general = bw::run_cuda(c, e, pl, {}, in, Launch::stream, 1, "general").front();
            for (const flashsci_precision_t precision : kPrecisions) {
                c.precision = precision;
                INFO("precision " << precision_name(precision) << " against the forced general backward");
                const bw::Gradients got = bw::run_cuda(c, e, pl, {}, in, Launch::stream, 1, "").front();
                CHECK(bw::bitwise_equal(got.dq, general.dq));
                CHECK(bw::bitwise_equal(got.dk, general.dk));
                CHECK(bw::bitwise_equal(got.dv, general.dv));
            }
        }
}
