// The CUDA backward's test harness (flashsci_backward[_varlen] through the public API against the CPU backend's, on
// the same fresh random inputs with O and LSE from the CPU forward): cases, layouts, poisoned gradients, the
// comparison (every element finite and close, rows that see no key (dq) and keys no row sees (dk, dv) exactly 0,
// padding and tokens outside every sequence never written), deterministic repeats and graph capture. Each check
// may force a kernel with FLASHSCI_KERNEL.
#pragma once

#include "gpu_cases.h"

namespace flashsci::test::gpu::backward {


// Tolerances against the CPU backend. fp32: max |gpu − cpu| <= kFp32Gradient·max |cpu| over dq, dk, dv (both
// accumulate in fp32, in different orders). fp16/bf16: |gpu − cpu| <= kHalfRelative·|cpu| + kHalfFloor·max |cpu| over
// dq, dk, dv: the gradients are rounded to the element type on both sides.
inline constexpr double kFp32Gradient = 5e-5;
inline constexpr int kDeterministicRuns = 10;
inline constexpr int64_t kSpareTokens = 3;  // varlen: tokens past the last sequence, never written

// How every tensor (inputs, O, dO and the gradients) is laid out.
enum class Layouts {
    contiguous,  // [batch, seqlen, heads, head_dim]; varlen [total, heads, head_dim]
    bhsd,        // [batch, heads, seqlen, head_dim]; varlen [heads, total, head_dim]
    padded,      // padded heads, rows and batches, and the tensor one element past its buffer's start
    aligned,     // padded like `padded`, by whole 16-byte chunks: every row starts 16-byte aligned
    shifted,     // strides as `aligned`, but the tensor one element past its buffer's start (misaligned pointers)
};
inline constexpr int64_t kHeadPad = 3, kRowPad = 5, kBatchPad = 7, kBase = 1;  // Layouts::padded, in elements
inline constexpr int64_t kAlignedPad = 8;                                     // Layouts::aligned, in elements

struct BackwardCase {
    flashsci_dtype_t dtype;
    Shape shape;  // varlen: heads and head_dim; batch and the seqlens follow from lens_q and lens_k
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    Layouts layouts = Layouts::contiguous;
    bool deterministic = false;
    int64_t window_left = -1, window_right = -1;
    float softcap = 0.0f;
    bool alibi = false;
    std::vector<int64_t> lens_q = {}, lens_k = {};  // non-empty: a varlen batch of these sequences
    flashsci_precision_t precision = FLASHSCI_PRECISION_DEFAULT;  // fp32 plans only
};

inline bool is_varlen(const BackwardCase& c) { return !c.lens_q.empty(); }

// The case's shape with varlen maxima, and its totals (dense: batch·seqlen).
struct Extent {
    Shape shape;
    int64_t total_q, total_k;
    std::vector<int32_t> cu_q, cu_k;  // varlen offsets
};
inline Extent extent_of(const BackwardCase& c) {
    Extent e{c.shape, c.shape.batch * c.shape.seqlen_q, c.shape.batch * c.shape.seqlen_k, {}, {}};
    if (!is_varlen(c)) return e;
    REQUIRE(c.lens_q.size() == c.lens_k.size());
    e.shape.batch = int64_t(c.lens_q.size());
    e.shape.seqlen_q = std::max<int64_t>(1, *std::max_element(c.lens_q.begin(), c.lens_q.end()));
    e.shape.seqlen_k = std::max<int64_t>(1, *std::max_element(c.lens_k.begin(), c.lens_k.end()));
    e.cu_q = {0}, e.cu_k = {0};
    for (size_t b = 0; b < c.lens_q.size(); ++b) {
        e.cu_q.push_back(int32_t(e.cu_q.back() + c.lens_q[b]));
        e.cu_k.push_back(int32_t(e.cu_k.back() + c.lens_k[b]));
    }
    e.total_q = e.cu_q.back() + kSpareTokens;
    e.total_k = e.cu_k.back() + kSpareTokens;
    return e;
}

// One tensor's layout and the elements of its buffer.
struct Placed {
    Layout layout;
    size_t count;
};
inline Placed place_tensor(Layouts layouts, bool varlen, int64_t batch, int64_t rows, int64_t heads,
                           int64_t head_dim) {
    const int64_t batches = varlen ? 1 : batch;  // varlen: rows = total, batch stride 0
    Layout l{};
    int64_t batch_span = 0;
    switch (layouts) {
        case Layouts::contiguous:
            l = contiguous_layout(rows, heads, head_dim), batch_span = rows * heads * head_dim;
            break;
        case Layouts::bhsd: l = bhsd_layout(rows, heads, head_dim), batch_span = rows * heads * head_dim; break;
        case Layouts::padded: {
            const int64_t head = head_dim + kHeadPad, seq = heads * head + kRowPad;
            l = {rows * seq + kBatchPad, seq, head, kBase};
            batch_span = l.batch;
            break;
        }
        case Layouts::aligned:
        case Layouts::shifted: {
            const int64_t head = head_dim + kAlignedPad, seq = heads * head + kAlignedPad;
            l = {rows * seq + kAlignedPad, seq, head, layouts == Layouts::aligned ? kAlignedPad : kBase};
            batch_span = l.batch;
            break;
        }
    }
    if (varlen) l.batch = 0;
    return {l, size_t(l.base + batches * batch_span)};
}

struct Placement {
    Placed q, k, v, o;  // dO, dQ like O and Q; dK, dV like K, V
    size_t lse_count;
};
inline Placement place(const BackwardCase& c, const Extent& e) {
    const Shape& s = e.shape;
    const bool varlen = is_varlen(c);
    const int64_t rows_q = varlen ? e.total_q : s.seqlen_q, rows_k = varlen ? e.total_k : s.seqlen_k;
    const Placed q = place_tensor(c.layouts, varlen, s.batch, rows_q, s.heads_q, s.head_dim);
    const Placed kv = place_tensor(c.layouts, varlen, s.batch, rows_k, s.heads_kv, s.head_dim);
    return {q, kv, kv, q, size_t(varlen ? s.heads_q * e.total_q : s.batch * s.heads_q * s.seqlen_q)};
}

inline std::string describe(const BackwardCase& c) {
    std::ostringstream out;
    const Shape& s = c.shape;
    out << dtype_name(c.dtype) << " heads " << s.heads_q << "/" << s.heads_kv << " head_dim " << s.head_dim;
    if (is_varlen(c)) {
        out << " varlen q";
        for (const int64_t len : c.lens_q) out << " " << len;
        out << " k";
        for (const int64_t len : c.lens_k) out << " " << len;
    } else {
        out << " batch " << s.batch << " seqlen_q " << s.seqlen_q << " seqlen_k " << s.seqlen_k;
    }
    out << " mask " << mask_name(c.mask) << " layouts " << int(c.layouts);
    if (c.deterministic) out << " deterministic";
    if (c.window_left >= 0 || c.window_right >= 0) out << " window (" << c.window_left << ", " << c.window_right << ")";
    if (c.softcap > 0.0f) out << " softcap " << c.softcap;
    if (c.alibi) out << " alibi";
    if (c.precision != FLASHSCI_PRECISION_DEFAULT) out << " precision " << int(c.precision);
    return out.str();
}

inline std::vector<float> alibi_slopes(const BackwardCase& c) {
    std::vector<float> slopes;
    if (c.alibi)
        for (int64_t h = 0; h < c.shape.heads_q; ++h) slopes.push_back(std::exp2(-0.5f * float(h + 1)));
    return slopes;
}

inline void configure(flashsci_plan_t plan, const BackwardCase& c, const Extent& e, const Placement& pl,
               const std::vector<float>& slopes) {
    const Shape& s = e.shape;
    if (is_varlen(c))
        REQUIRE_FLASHSCI(flashsci_plan_set_varlen_shape(plan, s.batch, e.total_q, e.total_k, s.seqlen_q, s.seqlen_k,
                                                        s.heads_q, s.heads_kv, s.head_dim));
    else
        REQUIRE_FLASHSCI(
            flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim));
    REQUIRE_FLASHSCI(flashsci_plan_set_dtype(plan, c.dtype));
    REQUIRE_FLASHSCI(flashsci_plan_set_mask(plan, c.mask));
    REQUIRE_FLASHSCI(flashsci_plan_set_window(plan, c.window_left, c.window_right));
    REQUIRE_FLASHSCI(flashsci_plan_set_softcap(plan, c.softcap));
    REQUIRE_FLASHSCI(flashsci_plan_set_alibi_slopes(plan, slopes.empty() ? nullptr : slopes.data()));
    REQUIRE_FLASHSCI(flashsci_plan_set_deterministic(plan, c.deterministic ? 1 : 0));
    REQUIRE_FLASHSCI(flashsci_plan_set_precision(plan, c.precision));
    const std::pair<flashsci_tensor_t, Layout> strides[] = {
        {FLASHSCI_TENSOR_Q, pl.q.layout},  {FLASHSCI_TENSOR_K, pl.k.layout},  {FLASHSCI_TENSOR_V, pl.v.layout},
        {FLASHSCI_TENSOR_O, pl.o.layout},  {FLASHSCI_TENSOR_DO, pl.o.layout}, {FLASHSCI_TENSOR_DQ, pl.q.layout},
        {FLASHSCI_TENSOR_DK, pl.k.layout}, {FLASHSCI_TENSOR_DV, pl.v.layout}};
    for (const auto& [tensor, layout] : strides)
        REQUIRE_FLASHSCI(flashsci_plan_set_strides(plan, tensor, layout.batch, layout.seq, layout.head));
}

// Where a tensor's element [0, 0, 0, 0] sits in its buffer (a padded layout starts past the buffer's start).
template <typename Byte>
Byte* origin(Byte* buffer, const Placed& placed, flashsci_dtype_t dtype) {
    return buffer + size_t(placed.layout.base) * dtype_bytes(dtype);
}

struct Inputs {
    HostTensor q, k, v, o, dout;
    std::vector<float> lse;
};

struct Gradients {
    HostTensor dq, dk, dv;
};

inline Gradients poisoned_gradients(const BackwardCase& c, const Placement& pl) {
    Gradients g{HostTensor(c.dtype, pl.q.count), HostTensor(c.dtype, pl.k.count), HostTensor(c.dtype, pl.v.count)};
    g.dq.poison(), g.dk.poison(), g.dv.poison();
    return g;
}

// Random q, k, v and dO (padding included), and O and LSE from the CPU forward.
inline Inputs make_inputs(const BackwardCase& c, const Extent& e, const Placement& pl, const std::vector<float>& slopes,
                   std::mt19937_64& rng) {
    Inputs in{HostTensor(c.dtype, pl.q.count), HostTensor(c.dtype, pl.k.count), HostTensor(c.dtype, pl.v.count),
              HostTensor(c.dtype, pl.o.count), HostTensor(c.dtype, pl.o.count), std::vector<float>(pl.lse_count)};
    in.q.fill_random(rng), in.k.fill_random(rng), in.v.fill_random(rng), in.dout.fill_random(rng);
    in.o.poison();
    std::memset(in.lse.data(), 0xff, in.lse.size() * sizeof(float));
    Plan plan(FLASHSCI_BACKEND_CPU);
    configure(plan, c, e, pl, slopes);
    const auto at = [&](HostTensor& t, const Placed& placed) {
        return origin(static_cast<unsigned char*>(t.data()), placed, c.dtype);
    };
    if (is_varlen(c))
        REQUIRE_FLASHSCI(flashsci_forward_varlen(plan, at(in.q, pl.q), at(in.k, pl.k), at(in.v, pl.v), at(in.o, pl.o),
                                                 in.lse.data(), e.cu_q.data(), e.cu_k.data(), nullptr, 0, nullptr));
    else
        REQUIRE_FLASHSCI(flashsci_forward(plan, at(in.q, pl.q), at(in.k, pl.k), at(in.v, pl.v), at(in.o, pl.o),
                                          in.lse.data(), nullptr, 0, nullptr));
    return in;
}

inline Gradients run_cpu(const BackwardCase& c, const Extent& e, const Placement& pl, const std::vector<float>& slopes,
                  const Inputs& in) {
    // The oracle: the CPU backward's reference path (fp64 sums for fp32 inputs), not a fast one.
    const ScopedEnvironment reference_path("FLASHSCI_CPU_ISA", "reference");
    Plan plan(FLASHSCI_BACKEND_CPU);
    configure(plan, c, e, pl, slopes);
    Gradients g = poisoned_gradients(c, pl);
    const auto in_at = [&](const HostTensor& t, const Placed& placed) {
        return origin(static_cast<const unsigned char*>(t.data()), placed, c.dtype);
    };
    const auto out_at = [&](HostTensor& t, const Placed& placed) {
        return origin(static_cast<unsigned char*>(t.data()), placed, c.dtype);
    };
    if (is_varlen(c))
        REQUIRE_FLASHSCI(flashsci_backward_varlen(plan, in_at(in.q, pl.q), in_at(in.k, pl.k), in_at(in.v, pl.v),
                                                  in_at(in.o, pl.o), in_at(in.dout, pl.o), in.lse.data(),
                                                  out_at(g.dq, pl.q), out_at(g.dk, pl.k), out_at(g.dv, pl.v),
                                                  e.cu_q.data(), e.cu_k.data(), nullptr, 0, nullptr));
    else
        REQUIRE_FLASHSCI(flashsci_backward(plan, in_at(in.q, pl.q), in_at(in.k, pl.k), in_at(in.v, pl.v),
                                           in_at(in.o, pl.o), in_at(in.dout, pl.o), in.lse.data(), out_at(g.dq, pl.q),
                                           out_at(g.dk, pl.k), out_at(g.dv, pl.v), nullptr, 0, nullptr));
    return g;
}

inline void upload(const DeviceBuffer& dst, const void* src, size_t bytes) {
    REQUIRE_CUDA(cudaMemcpy(dst.get(), src, bytes, cudaMemcpyHostToDevice));
}

inline void download(HostTensor& dst, const DeviceBuffer& src) {
    REQUIRE_CUDA(cudaMemcpy(dst.data(), src.get(), dst.size_bytes(), cudaMemcpyDeviceToHost));
}

// `runs` backwards on the CUDA backend of a plan made under FLASHSCI_KERNEL=force (enqueued directly, or captured
// once in a CUDA graph and replayed), each into freshly poisoned gradients with a poisoned workspace; the gradients
// of every run.
inline std::vector<Gradients> run_cuda(const BackwardCase& c, const Extent& e, const Placement& pl,
                                       const std::vector<float>& slopes, const Inputs& in, Launch launch, int runs,
                                       const char* force) {
    const ScopedEnvironment forced("FLASHSCI_KERNEL", force);  // read at plan creation
    Plan plan(FLASHSCI_BACKEND_CUDA);
    configure(plan, c, e, pl, slopes);
    size_t workspace_bytes = 0;
    REQUIRE_FLASHSCI(flashsci_plan_get_backward_workspace_size(plan, &workspace_bytes));

    const Gradients poison = poisoned_gradients(c, pl);
    const size_t lse_bytes = in.lse.size() * sizeof(float), offset_bytes = e.cu_q.size() * sizeof(int32_t);
    DeviceBuffer d_q(in.q.size_bytes()), d_k(in.k.size_bytes()), d_v(in.v.size_bytes()), d_o(in.o.size_bytes()),
        d_dout(in.dout.size_bytes()), d_lse(lse_bytes), d_dq(poison.dq.size_bytes()), d_dk(poison.dk.size_bytes()),
        d_dv(poison.dv.size_bytes()), d_cu_q(offset_bytes), d_cu_k(offset_bytes), workspace(workspace_bytes);
    upload(d_q, in.q.data(), in.q.size_bytes());
    upload(d_k, in.k.data(), in.k.size_bytes());
    upload(d_v, in.v.data(), in.v.size_bytes());
    upload(d_o, in.o.data(), in.o.size_bytes());
    upload(d_dout, in.dout.data(), in.dout.size_bytes());
    upload(d_lse, in.lse.data(), lse_bytes);
    if (is_varlen(c)) {
        upload(d_cu_q, e.cu_q.data(), offset_bytes);
        upload(d_cu_k, e.cu_k.data(), offset_bytes);
    }

    Stream stream;
    const auto at = [&](const DeviceBuffer& buffer, const Placed& placed) {
        return origin(buffer.get(), placed, c.dtype);
    };
    const auto backward = [&] {
        const auto* lse = reinterpret_cast<const float*>(d_lse.get());
        if (is_varlen(c))
            return flashsci_backward_varlen(
                plan, at(d_q, pl.q), at(d_k, pl.k), at(d_v, pl.v), at(d_o, pl.o), at(d_dout, pl.o), lse, at(d_dq, pl.q),
                at(d_dk, pl.k), at(d_dv, pl.v), reinterpret_cast<const int32_t*>(d_cu_q.get()),
                reinterpret_cast<const int32_t*>(d_cu_k.get()), workspace.get(), workspace_bytes, stream.get());
        return flashsci_backward(plan, at(d_q, pl.q), at(d_k, pl.k), at(d_v, pl.v), at(d_o, pl.o), at(d_dout, pl.o),
                                 lse, at(d_dq, pl.q), at(d_dk, pl.k), at(d_dv, pl.v), workspace.get(), workspace_bytes,
                                 stream.get());
    };
    GraphExec exec(nullptr, &cudaGraphExecDestroy);
    if (launch == Launch::graph) exec = capture_graph(stream.get(), backward);

    std::vector<Gradients> results;
    for (int run = 0; run < runs; ++run) {
        upload(d_dq, poison.dq.data(), poison.dq.size_bytes());
        upload(d_dk, poison.dk.data(), poison.dk.size_bytes());
        upload(d_dv, poison.dv.data(), poison.dv.size_bytes());
        if (workspace_bytes > 0) REQUIRE_CUDA(cudaMemset(workspace.get(), 0xff, workspace_bytes));  // any bits
        if (launch == Launch::stream)
            REQUIRE_FLASHSCI(backward());
        else
            REQUIRE_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
        REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
        Gradients g = poisoned_gradients(c, pl);
        download(g.dq, d_dq), download(g.dk, d_dk), download(g.dv, d_dv);
        results.push_back(std::move(g));
    }
    return results;
}

// One sequence of the case: its lengths and first rows in the (packed) tensors.
struct SequenceView {
    int64_t b, q_start, k_start, len_q, len_k;
};
inline std::vector<SequenceView> sequences_of(const BackwardCase& c, const Extent& e) {
    std::vector<SequenceView> out;
    for (int64_t b = 0; b < e.shape.batch; ++b)
        if (is_varlen(c))
            out.push_back({b, e.cu_q[size_t(b)], e.cu_k[size_t(b)], c.lens_q[size_t(b)], c.lens_k[size_t(b)]});
        else
            out.push_back({b, 0, 0, e.shape.seqlen_q, e.shape.seqlen_k});
    return out;
}

// A gradient tensor's owned elements: element → (must be exactly zero). Everything else must stay poisoned.
struct Owned {
    std::vector<char> owned, zero;
};

inline bool gradient_close(flashsci_dtype_t dtype, double got, double want, double max_want) {
    if (!std::isfinite(got) || !std::isfinite(want)) return false;
    const double error = std::fabs(got - want);
    if (dtype == FLASHSCI_DTYPE_FLOAT32) return error <= kFp32Gradient * max_want;
    return error <= kHalfRelative * std::fabs(want) + kHalfFloor * max_want;
}

// The largest owned magnitude of a CPU gradient.
inline double max_owned(const HostTensor& want, const Owned& owned) {
    double max_want = 0;
    for (size_t idx = 0; idx < want.count(); ++idx)
        if (owned.owned[idx]) max_want = std::max(max_want, std::fabs(want.get(idx)));
    return max_want;
}

// max_want: the scale the error floor is taken from, the largest of the three gradients (a gradient can be zero up
// to rounding, e.g. dq and dk when each row sees one key, where the GPU's dP − D leaves residues of rounding size).
inline void compare_tensor(const char* name, flashsci_dtype_t dtype, const HostTensor& got, const HostTensor& want,
                           const Owned& owned, double max_want) {
    Mismatches bad;
    for (size_t idx = 0; idx < got.count(); ++idx) {
        const double g = got.get(idx), w = want.get(idx);
        const auto at = [&] {
            std::ostringstream s;
            s.precision(9);
            s << name << " element " << idx << ": gpu " << g << ", cpu " << w
              << (owned.zero[idx] ? " (must be 0)" : "");
            return s.str();
        };
        if (!owned.owned[idx])
            bad.add(element_poisoned(got, idx), [&] { return std::string("written outside ") + name + ": " + at(); });
        else
            bad.add(gradient_close(dtype, g, w, max_want) && (!owned.zero[idx] || g == 0.0), at);
    }
    INFO(name << ": " << bad.count() << " mismatches (error scale " << max_want << "); first: " << bad.first());
    CHECK(bad.count() == 0);
}

// dq, dk and dv against the CPU backend's.
inline void compare(const BackwardCase& c, const Extent& e, const Placement& pl, const Gradients& got,
                    const Gradients& want) {
    const Shape& s = e.shape;
    Owned dq{std::vector<char>(pl.q.count), std::vector<char>(pl.q.count)};
    Owned dkv{std::vector<char>(pl.k.count), std::vector<char>(pl.k.count)};
    for (const SequenceView& seq : sequences_of(c, e)) {
        const Shape one{1, seq.len_q, seq.len_k, s.heads_q, s.heads_kv, s.head_dim};
        const Features f{c.window_left, c.window_right, c.softcap, 0.0};
        std::vector<char> key_seen(size_t(seq.len_k), 0);
        for (int64_t i = 0; i < seq.len_q; ++i) {
            const KeyRange keys = visible_keys(one, c.mask, f, i);
            const bool blind = keys.last < keys.first;
            for (int64_t j = std::max<int64_t>(0, keys.first); j <= keys.last; ++j) key_seen[size_t(j)] = 1;
            const int64_t row = is_varlen(c) ? seq.q_start + i : i;
            for (int64_t h = 0; h < s.heads_q; ++h)
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t idx = pl.q.layout.offset(seq.b, row, h) + size_t(d);
                    dq.owned[idx] = 1, dq.zero[idx] = blind;
                }
        }
        for (int64_t j = 0; j < seq.len_k; ++j) {
            const int64_t row = is_varlen(c) ? seq.k_start + j : j;
            for (int64_t h = 0; h < s.heads_kv; ++h)
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t idx = pl.k.layout.offset(seq.b, row, h) + size_t(d);
                    dkv.owned[idx] = 1, dkv.zero[idx] = !key_seen[size_t(j)];
                }
        }
    }
    const double scale = std::max({max_owned(want.dq, dq), max_owned(want.dk, dkv), max_owned(want.dv, dkv)});
    compare_tensor("dq", c.dtype, got.dq, want.dq, dq, scale);
    compare_tensor("dk", c.dtype, got.dk, want.dk, dkv, scale);
    compare_tensor("dv", c.dtype, got.dv, want.dv, dkv, scale);
}

inline bool bitwise_equal(const HostTensor& a, const HostTensor& b) {
    return a.size_bytes() == b.size_bytes() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

// One case on fresh random inputs: the CUDA backward under FLASHSCI_KERNEL=force ("" for select_kernel's own
// choice; `runs` times; a deterministic case's runs must agree bit for bit) against the CPU backend's.
inline void check_backward(const BackwardCase& c, const char* force, Launch launch = Launch::stream, int runs = 1) {
    const uint64_t seed = fresh_seed();
    INFO(describe(c) << ", FLASHSCI_KERNEL=" << force << ", seed " << seed);
    std::mt19937_64 rng(seed);
    const Extent e = extent_of(c);
    const Placement pl = place(c, e);
    const std::vector<float> slopes = alibi_slopes(c);
    const Inputs in = make_inputs(c, e, pl, slopes, rng);
    const Gradients want = run_cpu(c, e, pl, slopes, in);
    const std::vector<Gradients> got = run_cuda(c, e, pl, slopes, in, launch, runs, force);
    compare(c, e, pl, got.front(), want);
    for (size_t run = 1; run < got.size(); ++run) {
        INFO("run " << run << " against run 0");
        if (c.deterministic) {
            CHECK(bitwise_equal(got[run].dq, got.front().dq));
            CHECK(bitwise_equal(got[run].dk, got.front().dk));
            CHECK(bitwise_equal(got[run].dv, got.front().dv));
        } else {
            compare(c, e, pl, got[run], want);
        }
    }
}

// The window sweep the backwards' tests share, under FLASHSCI_KERNEL=force: on a 2×150×170 problem (4 query heads,
// 2 kv heads, head_dim 64), each window alone, with softcap 5 and with ALiBi.
inline void check_windows(flashsci_dtype_t dtype, flashsci_mask_t mask, const char* force) {
    const std::pair<int64_t, int64_t> windows[] = {{-1, -1}, {0, 0}, {16, -1}, {-1, 5}, {40, 40}};
    for (const auto& [left, right] : windows) {
        check_backward({dtype, {2, 150, 170, 4, 2, 64}, mask, Layouts::contiguous, false, left, right}, force);
        check_backward({dtype, {2, 150, 170, 4, 2, 64}, mask, Layouts::contiguous, false, left, right, 5.0f}, force);
        check_backward({dtype, {2, 150, 170, 4, 2, 64}, mask, Layouts::contiguous, false, left, right, 0.0f, true},
                       force);
    }
}

// The varlen batch with empty sequences (on either side) the backwards' tests share, under FLASHSCI_KERNEL=force:
// `c` (dtype, heads, head_dim, mask, layouts) as given, then deterministic with a window, softcap and ALiBi.
inline void check_empty_sequences(BackwardCase c, const char* force) {
    c.lens_q = {5, 0, 130, 17, 1, 64}, c.lens_k = {7, 3, 130, 0, 200, 64};
    check_backward(c, force);
    c.deterministic = true, c.window_left = 20, c.window_right = 3, c.softcap = 4.0f, c.alibi = true;
    check_backward(c, force);
}

}  // namespace flashsci::test::gpu::backward
