// Variable-length batches on a CUDA path: one forward of a varlen::Case (its inputs, offsets and poisoned outputs
// and workspace on the device) and its comparison with the CPU backend. Shared by the varlen and decoding tests.
#pragma once

#include "gpu_cases.h"
#include "varlen_cases.h"

namespace flashsci::test::varlen {

namespace gpu = flashsci::test::gpu;
namespace vl = flashsci::test::varlen;

template <typename T>
inline void copy_to_device(const gpu::DeviceBuffer& dst, const T* src, size_t count) {
    REQUIRE_CUDA(cudaMemcpy(dst.get(), src, count * sizeof(T), cudaMemcpyHostToDevice));
}

// The case's inputs and offsets copied to the device, one forward on a CUDA plan (enqueued on a stream of its own,
// or captured in a CUDA graph and replayed), the outputs copied back.
inline vl::Outputs run_cuda(const gpu::Path& path, const vl::Case& c, const vl::Placement& pl, const HostTensor& in,
                     gpu::Launch launch = gpu::Launch::stream) {
    const gpu::ScopedEnvironment force("FLASHSCI_KERNEL", path.force);  // read at plan creation
    gpu::Plan plan(FLASHSCI_BACKEND_CUDA);
    vl::configure(plan, c, pl);
    const size_t workspace_bytes = gpu::checked_workspace_bytes(path, plan);

    vl::Outputs out = vl::poisoned_outputs(c, pl);
    const flashsci::test::VarlenOffsets cu = vl::offsets_of(c);
    const size_t lse_bytes = out.lse.size() * sizeof(float), offset_bytes = cu.q.size() * sizeof(int32_t);
    gpu::DeviceBuffer d_in(in.size_bytes()), d_o(out.o.size_bytes()), d_lse(lse_bytes), d_cu_q(offset_bytes),
        d_cu_k(offset_bytes), workspace(workspace_bytes);
    copy_to_device(d_in, static_cast<const unsigned char*>(in.data()), in.size_bytes());
    copy_to_device(d_o, static_cast<const unsigned char*>(out.o.data()), out.o.size_bytes());
    copy_to_device(d_lse, out.lse.data(), out.lse.size());
    copy_to_device(d_cu_q, cu.q.data(), cu.q.size());
    copy_to_device(d_cu_k, cu.k.data(), cu.k.size());
    if (workspace_bytes > 0) REQUIRE_CUDA(cudaMemset(workspace.get(), 0xff, workspace_bytes));  // scratch: any bits

    const size_t bytes = gpu::dtype_bytes(c.dtype);
    gpu::Stream stream;
    const auto forward = [&] {
        return flashsci_forward_varlen(plan, d_in.get() + size_t(pl.q.base) * bytes,
                                       d_in.get() + size_t(pl.k.base) * bytes, d_in.get() + size_t(pl.v.base) * bytes,
                                       d_o.get(), c.with_lse ? reinterpret_cast<float*>(d_lse.get()) : nullptr,
                                       reinterpret_cast<const int32_t*>(d_cu_q.get()),
                                       reinterpret_cast<const int32_t*>(d_cu_k.get()), workspace.get(),
                                       workspace_bytes, stream.get());
    };
    if (launch == gpu::Launch::stream) {
        REQUIRE_FLASHSCI(forward());
    } else {
        const gpu::GraphExec exec = gpu::capture_graph(stream.get(), forward);
        REQUIRE_CUDA(cudaGraphLaunch(exec.get(), stream.get()));
    }
    REQUIRE_CUDA(cudaStreamSynchronize(stream.get()));
    REQUIRE_CUDA(cudaMemcpy(out.o.data(), d_o.get(), out.o.size_bytes(), cudaMemcpyDeviceToHost));
    REQUIRE_CUDA(cudaMemcpy(out.lse.data(), d_lse.get(), lse_bytes, cudaMemcpyDeviceToHost));
    return out;
}

// Every element of O and LSE that a sequence owns against the CPU backend (rows that see no key exactly 0 and
// -inf); every other element of O's buffer (padding, tokens past the last sequence) and of LSE still poisoned.
inline void compare(const vl::Case& c, const vl::Placement& pl, const vl::Outputs& got, const vl::Outputs& want) {
    const vl::Owned owned = vl::owned_elements(c, pl);
    double max_want = 0;
    for (size_t e = 0; e < pl.output_count; ++e)
        if (owned.o[e]) max_want = std::max(max_want, std::fabs(want.o.get(e)));
    const int64_t total_q = vl::totals_of(c).total_q;
    gpu::Mismatches bad;
    for (const vl::Token& t : vl::tokens_of(c))
        for (int64_t h = 0; h < c.heads_q; ++h) {
            const size_t lse_at = size_t(h * total_q + t.token);
            const bool blind = c.with_lse && std::isinf(want.lse[lse_at]);
            for (int64_t d = 0; d < c.head_dim; ++d) {
                const size_t e = pl.o.offset(0, t.token, h) + size_t(d);
                const double g = got.o.get(e), w = want.o.get(e);
                bad.add(gpu::output_close(c.dtype, g, w, max_want) && (!blind || g == 0.0), [&] {
                    return gpu::where("O", t.b, t.i, h, g, w) + " (token " + std::to_string(t.token) + ", column " +
                           std::to_string(d) + ")";
                });
            }
            if (c.with_lse)
                bad.add(gpu::lse_close(blind, got.lse[lse_at], want.lse[lse_at]),
                        [&] { return gpu::where("LSE", t.b, t.i, h, got.lse[lse_at], want.lse[lse_at]); });
        }
    for (size_t e = 0; e < pl.output_count; ++e)
        if (!owned.o[e])
            bad.add(vl::element_poisoned(got.o, e), [&] { return "written outside the sequences' O: element " +
                                                                 std::to_string(e); });
    for (size_t e = 0; e < pl.lse_count; ++e)
        if (!owned.lse[e] || !c.with_lse)
            bad.add(vl::lse_poisoned(got.lse[e]),
                    [&] { return "written outside the sequences' LSE: entry " + std::to_string(e); });
    INFO(bad.count() << " mismatches; first: " << bad.first());
    CHECK(bad.count() == 0);
}

// Fresh random packed inputs for c, and the seed they came from (for the caller's INFO).
struct RandomInputs {
    uint64_t seed;
    vl::Placement pl;
    HostTensor in;
};
inline RandomInputs random_inputs(const vl::Case& c) {
    const uint64_t seed = gpu::fresh_seed();
    std::mt19937_64 rng(seed);
    const vl::Placement pl = vl::place(c);
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    return {seed, pl, std::move(in)};
}

inline void check_case(const gpu::Path& path, const vl::Case& c, gpu::Launch launch = gpu::Launch::stream) {
    const auto [seed, pl, in] = random_inputs(c);
    INFO(vl::describe(c) << ", seed " << seed);
    const vl::Outputs cpu = vl::run_cpu(c, pl, in);
    const vl::Outputs cuda = run_cuda(path, c, pl, in, launch);
    compare(c, pl, cuda, cpu);
}

}  // namespace flashsci::test::varlen
