// The decoding path's template instances: one per (element type, head-dim bucket), each defined in its own .cu file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "problem.h"

namespace flashsci::kernels::decode {

// A work item is one (sequence, kv head): the (heads_q / heads_kv) · len_q query rows that share its keys,
// row r being query r / group of head kv_head · group + r % group. They fill one MMA's M of kMaxRows.
constexpr int kMaxRows = 16;
// head_dim runs in the smallest bucket that holds it (columns past head_dim are zeros in shared memory).
constexpr int kHeadDimBuckets[] = {64, 128, 256};

// Per bucket: warps per CTA, 16-key blocks each warp keeps staged (one computed on, the rest in flight), and the
// CTAs an H100/H200 SM then holds at once (shared memory: under 80 KiB each, so the sm_80 code also runs on
// sm_86/89's 99 KiB; registers from ptxas -v), which sizes the key splits to one full wave.
struct Pipeline {
    int head_dim, warps, stages, resident;
};
constexpr Pipeline kPipelines[] = {{64, 4, 3, 3}, {128, 4, 2, 2}, {256, 2, 2, 2}};
constexpr Pipeline pipeline(int head_dim) {
    for (const Pipeline& row : kPipelines)
        if (row.head_dim == head_dim) return row;
    return {head_dim, 0, 0, 0};
}

// How the keys of each work item are split: `count` CTAs take consecutive ranges of the item's band. With
// count > 1 each writes its rows' normalised O and LSE into the partial buffers (fp32, [item][split][row]
// [head_dim] and [item][split][row], `rows` rows per item) and merge() combines them.
struct Split {
    int count;
    int rows;
    float* partial_o;
    float* partial_lse;
};

// Enqueues the attention of p (element type T, head_dim <= kHeadDim) split as `split` on stream.
template <typename T, int kHeadDim>
cudaError_t launch_bucket(const Problem& p, const Split& split, cudaStream_t stream);

extern template cudaError_t launch_bucket<__half, 64>(const Problem&, const Split&, cudaStream_t);
extern template cudaError_t launch_bucket<__half, 128>(const Problem&, const Split&, cudaStream_t);
extern template cudaError_t launch_bucket<__half, 256>(const Problem&, const Split&, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 64>(const Problem&, const Split&, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 128>(const Problem&, const Split&, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 256>(const Problem&, const Split&, cudaStream_t);

}  // namespace flashsci::kernels::decode
