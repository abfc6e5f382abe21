// The general path's dispatch: element type and head-dim bucket pick the template instance.
#include "general/general.cuh"
#include "general/general.h"

namespace flashsci::kernels::general {
namespace {

template <typename T>
cudaError_t launch_element(const Problem& p, cudaStream_t stream) {
    if (p.head_dim <= kHeadDimBuckets[0]) return launch_bucket<T, kHeadDimBuckets[0]>(p, stream);
    if (p.head_dim <= kHeadDimBuckets[1]) return launch_bucket<T, kHeadDimBuckets[1]>(p, stream);
    return launch_bucket<T, kHeadDimBuckets[2]>(p, stream);
}

}  // namespace

cudaError_t launch(const Problem& p, cudaStream_t stream) {
    if (p.head_dim < kHeadDimStep || p.head_dim > kMaxHeadDim || p.head_dim % kHeadDimStep != 0)
        return cudaErrorInvalidValue;
    switch (p.element) {
        case Element::f16: return launch_element<__half>(p, stream);
        case Element::bf16: return launch_element<__nv_bfloat16>(p, stream);
        case Element::f32: return launch_element<float>(p, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace flashsci::kernels::general
