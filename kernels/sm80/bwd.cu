// Host side of the sm_80 backward: what it supports, its workspace, and its three launches (the general backward's D
// pre-pass, the main kernel on the device family's tile, the general backward's dQ conversion).
#include <algorithm>
#include <cstdint>

#include "general/backward_kernel.cuh"
#include "general/backward_schedule.h"
#include "sm80/bwd_instances.h"
#include "sm80/bwd_tiles.h"
#include "sm80/layout.h"
#include "sm80/sm80.h"

namespace flashsci::kernels::sm80 {
namespace {

template <typename T, int HeadDim>
cudaError_t launch_main(const Problem& p, const Gradients& g, const general::BackwardSchedule& s, Family family,
                        const float* row_dot, float* dq_accum, cudaStream_t stream) {
    if constexpr (!kCompiled<HeadDim>) {
        return cudaErrorNotSupported;
    } else {
        switch (family) {
            case Family::small:
                return launch_backward_tile<T, HeadDim, Family::small>(p, g, s, row_dot, dq_accum, stream);
            case Family::medium:
                return launch_backward_tile<T, HeadDim, Family::medium>(p, g, s, row_dot, dq_accum, stream);
            case Family::large:
                return launch_backward_tile<T, HeadDim, Family::large>(p, g, s, row_dot, dq_accum, stream);
        }
        return cudaErrorInvalidValue;
    }
}

template <typename T>
cudaError_t launch_element(const Problem& p, const Gradients& g, void* workspace, int num_sms, cudaStream_t stream) {
    namespace rows = general::backward;
    const Family family = device_family();
    const int bucket = head_dim_bucket(p.head_dim);
    const general::BackwardSchedule s =
        general::backward_schedule(p, g.deterministic, num_sms, backward_tile_config(bucket, family).block_n);
    auto* const base = static_cast<unsigned char*>(workspace);
    float* const row_dot = reinterpret_cast<float*>(base);
    float* const dq_accum = reinterpret_cast<float*>(base + s.dq_accum_offset);

    const int64_t items = p.batch * p.seqlen_q * p.heads_q;  // the row passes' work items, one warp each
    const int64_t row_ctas = std::min({(items + rows::kRowPassWarps - 1) / rows::kRowPassWarps,
                                       std::max<int64_t>(1, num_sms) * rows::kRowPassCtasPerSm, kMaxGridX});
    // D = rowsum(dO∘O); the accumulator's slices zeroed (a grid of 0 CTAs is a launch error: left out)
    if (row_ctas > 0)
        rows::prepare_kernel<T><<<unsigned(row_ctas), rows::kRowPassThreads, 0, stream>>>(p, g, s, row_dot, dq_accum);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    cudaError_t e = cudaErrorInvalidValue;
    switch (bucket) {
        case 64: e = launch_main<T, 64>(p, g, s, family, row_dot, dq_accum, stream); break;
        case 128: e = launch_main<T, 128>(p, g, s, family, row_dot, dq_accum, stream); break;
        case 256: e = launch_main<T, 256>(p, g, s, family, row_dot, dq_accum, stream); break;
    }
    if (e != cudaSuccess) return e;
    // dq = Σ of the slices, in the element type
    if (row_ctas > 0)
        rows::convert_kernel<T><<<unsigned(row_ctas), rows::kRowPassThreads, 0, stream>>>(p, g, s, dq_accum);
    return cudaGetLastError();
}

}  // namespace

bool supports_backward(const Problem& p, const Gradients& g, int major) {
    if (p.element == Element::f32 || !supports(p, major)) return false;  // fp32 gradients: the general backward
    if (!aligned(g.dout) || !aligned(g.dq) || !aligned(g.dk) || !aligned(g.dv)) return false;
    const int64_t rows_q = p.varlen ? p.total_q : p.seqlen_q, rows_k = p.varlen ? p.total_k : p.seqlen_k;
    return chunk_strides(g.dout_strides, rows_q, p.heads_q, p.batch) &&
           chunk_strides(g.dq_strides, rows_q, p.heads_q, p.batch) &&
           chunk_strides(g.dk_strides, rows_k, p.heads_kv, p.batch) &&
           chunk_strides(g.dv_strides, rows_k, p.heads_kv, p.batch);
}

const char* backward_requirements() {
    return "compute capability 8.0+, fp16/bf16, head_dim a multiple of 8 up to 256 in a bucket this build holds "
           "(FLASHSCI_SM80_HEAD_DIMS), q, k, v, o, dout, dq, dk and dv 16-byte aligned with strides in multiples of "
           "8 elements, sequence lengths under 2^30 and a positive scale";
}

const char* backward_kernel_name(const Problem& p) {
    const bool bf16 = p.element == Element::bf16;
    switch (head_dim_bucket(p.head_dim)) {
        case 64: return bf16 ? "sm80_bwd_hd64_bf16" : "sm80_bwd_hd64_f16";
        case 128: return bf16 ? "sm80_bwd_hd128_bf16" : "sm80_bwd_hd128_f16";
        default: return bf16 ? "sm80_bwd_hd256_bf16" : "sm80_bwd_hd256_f16";
    }
}

size_t backward_workspace_bytes(const Problem& p, const Gradients& g, int num_sms) {
    const int bucket = head_dim_bucket(p.head_dim);
    if (bucket == 0) return 0;
    return general::backward_schedule(p, g.deterministic, num_sms, backward_min_block_n(bucket)).bytes;
}

cudaError_t launch_backward(const Problem& p, const Gradients& g, void* workspace, int num_sms, cudaStream_t stream) {
    if (workspace == nullptr || head_dim_bucket(p.head_dim) == 0) return cudaErrorInvalidValue;
    switch (p.element) {
        case Element::f16: return launch_element<__half>(p, g, workspace, num_sms, stream);
        case Element::bf16: return launch_element<__nv_bfloat16>(p, g, workspace, num_sms, stream);
        case Element::f32: break;
    }
    return cudaErrorInvalidValue;
}

}  // namespace flashsci::kernels::sm80
