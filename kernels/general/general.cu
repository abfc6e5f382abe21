// The general path's dispatch: element type and head-dim bucket pick the template instance.
#include "common/device.cuh"
#include "general/general.cuh"
#include "general/general.h"

namespace flashsci::kernels::general {
namespace {

template <typename T>
cudaError_t launch_element(const Problem& p, const int* redo, int64_t max_ctas, cudaStream_t stream) {
    if (p.head_dim <= kHeadDimBuckets[0]) return launch_bucket<T, kHeadDimBuckets[0]>(p, redo, max_ctas, stream);
    if (p.head_dim <= kHeadDimBuckets[1]) return launch_bucket<T, kHeadDimBuckets[1]>(p, redo, max_ctas, stream);
    return launch_bucket<T, kHeadDimBuckets[2]>(p, redo, max_ctas, stream);
}

cudaError_t launch_any(const Problem& p, const int* redo, int64_t max_ctas, cudaStream_t stream) {
    if (p.head_dim < kHeadDimStep || p.head_dim > kMaxHeadDim || p.head_dim % kHeadDimStep != 0)
        return cudaErrorInvalidValue;
    switch (p.element) {
        case Element::f16: return launch_element<__half>(p, redo, max_ctas, stream);
        case Element::bf16: return launch_element<__nv_bfloat16>(p, redo, max_ctas, stream);
        case Element::f32: return launch_element<float>(p, redo, max_ctas, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch(const Problem& p, cudaStream_t stream) { return launch_any(p, nullptr, kMaxGridX, stream); }

cudaError_t launch_redo(const Problem& p, const int* redo, int num_sms, cudaStream_t stream) {
    Problem o_only = p;
    o_only.lse = nullptr;
    return launch_any(o_only, redo, num_sms, stream);
}

}  // namespace flashsci::kernels::general
