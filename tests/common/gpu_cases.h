// Shared machinery of the [gpu] tests: cases, layouts, one forward on the CPU backend and one on a
// CUDA path on the same fresh random inputs, and an element-by-element comparison of O and LSE.
#pragma once

#include <cuda_runtime_api.h>
#include <flashsci.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reference.h"
#include "tensors.h"

namespace flashsci::test::gpu {

using flashsci::test::bhsd_layout;
using flashsci::test::contiguous_layout;
using flashsci::test::dtype_bytes;
using flashsci::test::dtype_name;
using flashsci::test::Features;
using flashsci::test::fresh_seed;
using flashsci::test::HostTensor;
using flashsci::test::Layout;
using flashsci::test::mask_diagonal;
using flashsci::test::reference_row;
using flashsci::test::RowResult;
using flashsci::test::KeyRange;
using flashsci::test::visible_keys;
using flashsci::test::Shape;

#define REQUIRE_CUDA(call)                                 \
    do {                                                   \
        const cudaError_t error_ = (call);                 \
        INFO(#call << ": " << cudaGetErrorString(error_)); \
        REQUIRE(error_ == cudaSuccess);                    \
    } while (0)

#define REQUIRE_FLASHSCI(call)                                                                   \
    do {                                                                                         \
        const flashsci_status_t status_ = (call);                                                \
        INFO(#call << ": " << flashsci_status_string(status_) << ": " << flashsci_last_error()); \
        REQUIRE(status_ == FLASHSCI_STATUS_SUCCESS);                                             \
    } while (0)

// Tolerances. fp32: max |gpu − ref| <= kFp32Tolerance·max |ref|. fp16/bf16: |gpu − ref| <=
// kHalfRelative·|ref| + kHalfFloor·max |ref|: rounding the output costs one ulp (2⁻⁸ relative in bf16), and
// tensor-core paths round P to the input type before P·V, which costs ~1e-3·max |ref| on bf16 (seen on H100).
// LSE (always fp32 math): |gpu − ref| <= kLseTolerance·max(1, |ref|).
inline constexpr double kFp32Tolerance = 2e-5;
inline constexpr double kHalfRelative = 1e-2;
inline constexpr double kHalfFloor = 5e-3;
inline constexpr double kLseTolerance = 2e-5;

inline constexpr int64_t kOutputRowPad = 8;  // elements of padding after each packed-layout output row, never written

// How q, k, v and o are stored.
enum class Storage {
    bshd,        // contiguous [batch, seqlen, heads, head_dim], the default
    bhsd,        // contiguous [batch, heads, seqlen, head_dim], every tensor
    packed_qkv,  // one [batch, seqlen, heads_q + 2·heads_kv, head_dim] tensor; o with padded rows
};

// A CUDA path under test: FLASHSCI_KERNEL's value, and the prefix of the kernel name it must select.
struct Path {
    const char* force;
    const char* kernel_prefix;
};

// How the forward is enqueued.
enum class Launch { stream, graph };

struct Case {
    flashsci_dtype_t dtype;
    Shape shape;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    Storage storage = Storage::bshd;
    float scale = 0.0f;  // 0: the default 1/sqrt(head_dim)
    bool with_lse = true;
    int64_t window_left = -1, window_right = -1;  // -1: unbounded
    float softcap = 0.0f;                          // 0: off
    std::vector<float> alibi_slopes;               // [heads_q], or empty: off
    flashsci_precision_t precision = FLASHSCI_PRECISION_DEFAULT;  // fp32 plans only
};

// The reference's view of the case's window, softcap and ALiBi slope of query head h.
inline Features features_of(const Case& c, int64_t h) {
    return {c.window_left, c.window_right, c.softcap, c.alibi_slopes.empty() ? 0.0 : c.alibi_slopes[size_t(h)]};
}

inline const char* mask_name(flashsci_mask_t mask) {
    switch (mask) {
        case FLASHSCI_MASK_NONE: return "none";
        case FLASHSCI_MASK_CAUSAL: return "causal";
        case FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: return "causal_bottom_right";
    }
    return "?";
}

inline const char* precision_name(flashsci_precision_t precision) {
    switch (precision) {
        case FLASHSCI_PRECISION_DEFAULT: return "DEFAULT";
        case FLASHSCI_PRECISION_TF32: return "TF32";
        case FLASHSCI_PRECISION_IEEE: return "IEEE";
    }
    return "?";
}

inline const char* storage_name(Storage storage) {
    switch (storage) {
        case Storage::bshd: return "bshd";
        case Storage::bhsd: return "bhsd";
        case Storage::packed_qkv: return "packed_qkv";
    }
    return "?";
}

inline std::string describe(const Case& c) {
    std::ostringstream s;
    s << dtype_name(c.dtype) << " batch " << c.shape.batch << " seqlen_q " << c.shape.seqlen_q << " seqlen_k "
      << c.shape.seqlen_k << " heads " << c.shape.heads_q << "/" << c.shape.heads_kv << " head_dim " << c.shape.head_dim
      << " mask " << mask_name(c.mask) << " " << storage_name(c.storage);
    if (c.scale > 0.0f) s << " scale " << c.scale;
    if (!c.with_lse) s << " no lse";
    if (c.window_left >= 0 || c.window_right >= 0) s << " window (" << c.window_left << ", " << c.window_right << ")";
    if (c.softcap > 0.0f) s << " softcap " << c.softcap;
    if (!c.alibi_slopes.empty()) s << " alibi";
    if (c.precision != FLASHSCI_PRECISION_DEFAULT) s << " precision " << precision_name(c.precision);
    return s.str();
}

// Where q, k and v sit in one input buffer, and how o is laid out in its own.
struct Placement {
    Layout q, k, v, o;
    size_t q_offset, k_offset, v_offset;  // elements into the input buffer
    size_t input_count, output_count;
};

inline Placement place(const Case& c) {
    const Shape& s = c.shape;
    const size_t q_count = size_t(s.batch * s.seqlen_q * s.heads_q * s.head_dim);
    const size_t kv_count = size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim);
    switch (c.storage) {
        case Storage::bshd: {
            const Layout q = contiguous_layout(s.seqlen_q, s.heads_q, s.head_dim);
            const Layout kv = contiguous_layout(s.seqlen_k, s.heads_kv, s.head_dim);
            return {q, kv, kv, q, 0, q_count, q_count + kv_count, q_count + 2 * kv_count, q_count};
        }
        case Storage::bhsd: {
            const Layout q = bhsd_layout(s.seqlen_q, s.heads_q, s.head_dim);
            const Layout kv = bhsd_layout(s.seqlen_k, s.heads_kv, s.head_dim);
            return {q, kv, kv, q, 0, q_count, q_count + kv_count, q_count + 2 * kv_count, q_count};
        }
        case Storage::packed_qkv: {
            REQUIRE(s.seqlen_q == s.seqlen_k);
            const int64_t row = (s.heads_q + 2 * s.heads_kv) * s.head_dim;
            const int64_t o_row = s.heads_q * s.head_dim + kOutputRowPad;
            const Layout qkv{s.seqlen_q * row, row, s.head_dim};
            const Layout o{s.seqlen_q * o_row, o_row, s.head_dim};
            return {qkv,
                    qkv,
                    qkv,
                    o,
                    0,
                    size_t(s.heads_q * s.head_dim),
                    size_t((s.heads_q + s.heads_kv) * s.head_dim),
                    size_t(s.batch * s.seqlen_q * row),
                    size_t(s.batch * s.seqlen_q * o_row)};
        }
    }
    FAIL("unknown storage");
    return {};
}

class Plan {
public:
    explicit Plan(flashsci_backend_t backend) { REQUIRE_FLASHSCI(flashsci_plan_create(&plan_, backend)); }
    ~Plan() { flashsci_plan_destroy(plan_); }
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    operator flashsci_plan_t() const { return plan_; }

private:
    flashsci_plan_t plan_ = nullptr;
};

inline void configure(flashsci_plan_t plan, const Case& c, const Placement& pl) {
    const Shape& s = c.shape;
    REQUIRE_FLASHSCI(flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim));
    REQUIRE_FLASHSCI(flashsci_plan_set_dtype(plan, c.dtype));
    REQUIRE_FLASHSCI(flashsci_plan_set_mask(plan, c.mask));
    if (c.scale > 0.0f) REQUIRE_FLASHSCI(flashsci_plan_set_softmax_scale(plan, c.scale));
    REQUIRE_FLASHSCI(flashsci_plan_set_window(plan, c.window_left, c.window_right));
    REQUIRE_FLASHSCI(flashsci_plan_set_softcap(plan, c.softcap));
    REQUIRE_FLASHSCI(flashsci_plan_set_alibi_slopes(plan, c.alibi_slopes.empty() ? nullptr : c.alibi_slopes.data()));
    REQUIRE_FLASHSCI(flashsci_plan_set_precision(plan, c.precision));
    if (c.storage == Storage::bshd) return;
    const std::pair<flashsci_tensor_t, Layout> strides[] = {
        {FLASHSCI_TENSOR_Q, pl.q}, {FLASHSCI_TENSOR_K, pl.k}, {FLASHSCI_TENSOR_V, pl.v}, {FLASHSCI_TENSOR_O, pl.o}};
    for (const auto& [tensor, layout] : strides)
        REQUIRE_FLASHSCI(flashsci_plan_set_strides(plan, tensor, layout.batch, layout.seq, layout.head));
}

struct Outputs {
    HostTensor o;
    std::vector<float> lse;
};

// Entries of the case's LSE, [batch, heads_q, seqlen_q], and bytes of its O buffer as placed.
inline size_t lse_count(const Case& c) { return size_t(c.shape.batch * c.shape.heads_q * c.shape.seqlen_q); }
inline size_t output_bytes(const Case& c, const Placement& pl) { return pl.output_count * dtype_bytes(c.dtype); }

inline Outputs poisoned_outputs(const Case& c, const Placement& pl) {
    Outputs out{HostTensor(c.dtype, pl.output_count), std::vector<float>(lse_count(c))};
    out.o.poison();
    std::memset(out.lse.data(), 0xff, out.lse.size() * sizeof(float));  // NaN
    return out;
}

inline Outputs run_cpu(const Case& c, const Placement& pl, const HostTensor& in) {
    Plan plan(FLASHSCI_BACKEND_CPU);
    configure(plan, c, pl);
    Outputs out = poisoned_outputs(c, pl);
    const auto* base = static_cast<const unsigned char*>(in.data());
    const size_t bytes = dtype_bytes(c.dtype);
    REQUIRE_FLASHSCI(flashsci_forward(plan, base + pl.q_offset * bytes, base + pl.k_offset * bytes,
                                      base + pl.v_offset * bytes, out.o.data(), c.with_lse ? out.lse.data() : nullptr,
                                      nullptr, 0, nullptr));
    return out;
}

class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes) {
        if (bytes > 0) REQUIRE_CUDA(cudaMalloc(&ptr_, bytes));
    }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    unsigned char* get() const { return static_cast<unsigned char*>(ptr_); }

private:
    void* ptr_ = nullptr;
};

// Sets an environment variable for a scope, restoring the previous state after, so other tests see theirs.
class ScopedEnvironment {
public:
    ScopedEnvironment(const char* name, const char* value) : name_(name) {
        if (const char* previous = std::getenv(name)) previous_ = previous, had_previous_ = true;
        REQUIRE(setenv(name, value, 1) == 0);
    }
    ~ScopedEnvironment() {
        if (had_previous_)
            setenv(name_, previous_.c_str(), 1);
        else
            unsetenv(name_);
    }
    ScopedEnvironment(const ScopedEnvironment&) = delete;
    ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

private:
    const char* name_;
    std::string previous_;
    bool had_previous_ = false;
};

class Stream {
public:
    Stream() { REQUIRE_CUDA(cudaStreamCreate(&stream_)); }
    ~Stream() { cudaStreamDestroy(stream_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

using GraphExec = std::unique_ptr<CUgraphExec_st, decltype(&cudaGraphExecDestroy)>;

// Captures `forward` (which returns a flashsci status) on `stream` in global mode, where any allocation or
// synchronisation inside it would end the capture with an error, and instantiates the graph.
template <typename Forward>
GraphExec capture_graph(cudaStream_t stream, Forward&& forward) {
    cudaGraph_t graph = nullptr;
    REQUIRE_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const flashsci_status_t captured = forward();
    const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
    REQUIRE_FLASHSCI(captured);
    REQUIRE_CUDA(ended);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    REQUIRE_CUDA(instantiated);
    return GraphExec(exec, &cudaGraphExecDestroy);
}

// For a plan made under FLASHSCI_KERNEL=path.force and configured: the kernel it selects must be named
// `path.kernel_prefix`…; returns the workspace that kernel needs.
inline size_t checked_workspace_bytes(const Path& path, flashsci_plan_t plan) {
    const char* kernel = nullptr;
    REQUIRE_FLASHSCI(flashsci_plan_get_kernel_name(plan, &kernel));
    INFO("kernel " << kernel);
    REQUIRE(std::string(kernel).rfind(path.kernel_prefix, 0) == 0);
    size_t workspace_bytes = 0;
    REQUIRE_FLASHSCI(flashsci_plan_get_workspace_size(plan, &workspace_bytes));
    return workspace_bytes;
}

// Enqueues one forward on a stream of its own (directly, or captured in a CUDA graph and replayed).
// `path` is FLASHSCI_KERNEL's value for the plan; the kernel that runs must be named `kernel_prefix`….
inline Outputs run_cuda(const Path& path, const Case& c, const Placement& pl, const HostTensor& in,
                 Launch launch = Launch::stream) {
    const ScopedEnvironment force("FLASHSCI_KERNEL", path.force);  // read at plan creation
    Plan plan(FLASHSCI_BACKEND_CUDA);
    configure(plan, c, pl);
    const size_t workspace_bytes = checked_workspace_bytes(path, plan);

    Outputs out = poisoned_outputs(c, pl);
    const size_t lse_bytes = out.lse.size() * sizeof(float);
    DeviceBuffer d_in(in.size_bytes()), d_o(out.o.size_bytes()), d_lse(lse_bytes), workspace(workspace_bytes);
    REQUIRE_CUDA(cudaMemcpy(d_in.get(), in.data(), in.size_bytes(), cudaMemcpyHostToDevice));
    REQUIRE_CUDA(cudaMemcpy(d_o.get(), out.o.data(), out.o.size_bytes(), cudaMemcpyHostToDevice));
    REQUIRE_CUDA(cudaMemcpy(d_lse.get(), out.lse.data(), lse_bytes, cudaMemcpyHostToDevice));

    const size_t bytes = dtype_bytes(c.dtype);
    Stream stream;
    const auto forward = [&] {
        return flashsci_forward(plan, d_in.get() + pl.q_offset * bytes, d_in.get() + pl.k_offset * bytes,
                                d_in.get() + pl.v_offset * bytes, d_o.get(),
                                c.with_lse ? reinterpret_cast<float*>(d_lse.get()) : nullptr, workspace.get(),
                                workspace_bytes, stream.get());
    };
    if (launch == Launch::stream) {
        REQUIRE_FLASHSCI(forward());
    } else {
        const GraphExec exec = capture_graph(stream.get(), forward);
        REQUIRE_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
    }
    REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
    REQUIRE_CUDA(cudaMemcpy(out.o.data(), d_o.get(), out.o.size_bytes(), cudaMemcpyDeviceToHost));
    REQUIRE_CUDA(cudaMemcpy(out.lse.data(), d_lse.get(), lse_bytes, cudaMemcpyDeviceToHost));
    return out;
}

inline bool element_poisoned(const HostTensor& t, size_t i) {
    const size_t bytes = dtype_bytes(t.dtype());
    const auto* p = static_cast<const unsigned char*>(t.data()) + i * bytes;
    return std::all_of(p, p + bytes, [](unsigned char b) { return b == 0xff; });
}

// Counts failed checks and keeps the first one's description, so that one CHECK reports a whole tensor.
class Mismatches {
public:
    template <typename Describe>
    void add(bool ok, Describe&& describe) {
        if (ok) return;
        if (count_++ == 0) first_ = describe();
    }
    size_t count() const { return count_; }
    const std::string& first() const { return first_; }

private:
    size_t count_ = 0;
    std::string first_;
};

inline bool row_is_blind(const Case& c, int64_t i) {
    const KeyRange keys = visible_keys(c.shape, c.mask, features_of(c, 0), i);
    return keys.last < keys.first;
}

inline bool output_close(flashsci_dtype_t dtype, double got, double want, double max_want) {
    if (!std::isfinite(got) || !std::isfinite(want)) return false;
    const double error = std::fabs(got - want);
    if (dtype == FLASHSCI_DTYPE_FLOAT32) return error <= kFp32Tolerance * max_want;
    return error <= kHalfRelative * std::fabs(want) + kHalfFloor * max_want;
}

inline bool lse_close(bool blind, double got, double want) {
    const double minus_inf = -std::numeric_limits<double>::infinity();
    if (blind) return got == minus_inf && want == minus_inf;
    return std::isfinite(got) && std::isfinite(want) &&
           std::fabs(got - want) <= kLseTolerance * std::max(1.0, std::fabs(want));
}

inline std::string where(const char* tensor, int64_t b, int64_t i, int64_t h, double got, double want) {
    std::ostringstream s;
    s.precision(9);
    s << tensor << "[batch " << b << ", row " << i << ", head " << h << "]: gpu " << got << ", expected " << want;
    return s.str();
}

// Every element of O and LSE against the CPU backend; rows that see no key are exactly 0 and -inf;
// elements outside O's layout (padding) are still poisoned.
inline void compare(const Case& c, const Placement& pl, const Outputs& gpu, const Outputs& cpu) {
    const Shape& s = c.shape;
    double max_want = 0;
    for (size_t idx = 0; idx < pl.output_count; ++idx)
        if (!element_poisoned(cpu.o, idx)) max_want = std::max(max_want, std::fabs(cpu.o.get(idx)));

    Mismatches bad;
    std::vector<char> inside(pl.output_count, 0);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < s.seqlen_q; ++i) {
            const bool blind = row_is_blind(c, i);
            for (int64_t h = 0; h < s.heads_q; ++h)
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t idx = pl.o.offset(b, i, h) + size_t(d);
                    inside[idx] = 1;
                    const double got = gpu.o.get(idx), want = cpu.o.get(idx);
                    bad.add(output_close(c.dtype, got, want, max_want) && (!blind || got == 0.0),
                            [&] { return where("O", b, i, h, got, want) + " at column " + std::to_string(d); });
                }
        }
    for (size_t idx = 0; idx < pl.output_count; ++idx)
        if (!inside[idx])
            bad.add(element_poisoned(gpu.o, idx), [&] { return "written outside O: element " + std::to_string(idx); });
    if (c.with_lse)
        for (int64_t b = 0; b < s.batch; ++b)
            for (int64_t h = 0; h < s.heads_q; ++h)
                for (int64_t i = 0; i < s.seqlen_q; ++i) {
                    const size_t idx = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                    bad.add(lse_close(row_is_blind(c, i), gpu.lse[idx], cpu.lse[idx]),
                            [&] { return where("LSE", b, i, h, gpu.lse[idx], cpu.lse[idx]); });
                }
    INFO(bad.count() << " mismatches; first: " << bad.first());
    CHECK(bad.count() == 0);
}

// One case on fresh random inputs: a CUDA path against the CPU backend.
inline void check_case(const Path& path, const Case& c, Launch launch = Launch::stream) {
    const uint64_t seed = fresh_seed();
    INFO(describe(c) << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Placement pl = place(c);
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    const Outputs cpu = run_cpu(c, pl, in);
    const Outputs gpu = run_cuda(path, c, pl, in, launch);
    compare(c, pl, gpu, cpu);
}

// Sampled rows of a single-sequence, single-head problem (batch 1, heads 1/1, BSHD) against the fp64
// reference, for sizes where the CPU backend would be too slow: `rows` always, plus random rows up to
// `sampled_rows`.
inline void check_sampled_rows(const Case& c, const Placement& pl, const HostTensor& in, const Outputs& gpu,
                               std::vector<int64_t> rows, size_t sampled_rows, std::mt19937_64& rng) {
    const Shape& s = c.shape;
    REQUIRE((s.batch == 1 && s.heads_q == 1 && s.heads_kv == 1 && c.storage == Storage::bshd));
    const auto slice = [&](size_t offset, int64_t seqlen) {  // q, k or v as a tensor of its own
        HostTensor t(c.dtype, size_t(seqlen * s.head_dim));
        std::memcpy(t.data(), static_cast<const unsigned char*>(in.data()) + offset * dtype_bytes(c.dtype),
                    t.size_bytes());
        return t;
    };
    const HostTensor q = slice(pl.q_offset, s.seqlen_q), k = slice(pl.k_offset, s.seqlen_k),
                     v = slice(pl.v_offset, s.seqlen_k);
    std::uniform_int_distribution<int64_t> any_row(0, s.seqlen_q - 1);
    while (rows.size() < sampled_rows) rows.push_back(any_row(rng));
    const double scale = c.scale > 0.0f ? c.scale : 1.0 / std::sqrt(double(s.head_dim));
    std::vector<RowResult> want(rows.size());
    std::vector<std::thread> workers;
    const size_t threads = std::max(1u, std::thread::hardware_concurrency());
    for (size_t t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            for (size_t r = t; r < rows.size(); r += threads)
                want[r] = reference_row(s, c.mask, scale, q, pl.q, k, pl.k, v, pl.v, 0, 0, rows[r]);
        });
    for (std::thread& w : workers) w.join();

    double max_want = 0;
    for (const RowResult& r : want)
        for (const double x : r.out) max_want = std::max(max_want, std::fabs(x));
    Mismatches bad;
    for (size_t r = 0; r < rows.size(); ++r) {
        const int64_t i = rows[r];
        for (int64_t d = 0; d < s.head_dim; ++d) {
            const double got = gpu.o.get(pl.o.offset(0, i, 0) + size_t(d)), expected = want[r].out[size_t(d)];
            bad.add(output_close(c.dtype, got, expected, max_want),
                    [&] { return where("O", 0, i, 0, got, expected) + " at column " + std::to_string(d); });
        }
        bad.add(lse_close(row_is_blind(c, i), gpu.lse[size_t(i)], want[r].lse),
                [&] { return where("LSE", 0, i, 0, gpu.lse[size_t(i)], want[r].lse); });
    }
    INFO(bad.count() << " mismatches; first: " << bad.first());
    CHECK(bad.count() == 0);
}

// Whether FLASHSCI_KERNEL=force runs a bf16 plan of seqlen_q queries against 128 keys, head_dim 128, on this
// device and build; if not, the calling test says so ("SKIPPED: no <what> ...") and passes.
inline bool forced_kernel_available(const char* force, int64_t seqlen_q, const char* what) {
    const ScopedEnvironment forced("FLASHSCI_KERNEL", force);
    Plan plan(FLASHSCI_BACKEND_CUDA);
    REQUIRE_FLASHSCI(flashsci_plan_set_shape(plan, 1, seqlen_q, 128, 1, 1, 128));
    REQUIRE_FLASHSCI(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16));
    const char* kernel = nullptr;
    const flashsci_status_t status = flashsci_plan_get_kernel_name(plan, &kernel);
    if (status == FLASHSCI_STATUS_NOT_SUPPORTED) {
        WARN("SKIPPED: no " << what << " on this device or build: " << flashsci_last_error());
        return false;
    }
    REQUIRE_FLASHSCI(status);
    return true;
}

// The Hopper path exists only on sm_90 devices with sm_90a code in the build.
inline bool fast_path_available() { return forced_kernel_available("sm90", 128, "sm_90 fast path"); }

// The sm_80 forward needs compute capability 8.0 and sm_80+ code in the build.
inline bool sm80_available() { return forced_kernel_available("sm80", 128, "sm_80 forward"); }

// The decoding kernel needs compute capability 8.0.
inline bool decode_available() { return forced_kernel_available("decode", 1, "decoding kernel"); }

inline constexpr flashsci_dtype_t kDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};
inline constexpr flashsci_mask_t kMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
// The head dims of the Hopper fast path (kernels/sm90/tiles.h has a tile for each).
inline constexpr int64_t kFastHeadDims[] = {64, 96, 128, 192, 256};

}  // namespace flashsci::test::gpu
