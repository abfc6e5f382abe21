// The general backward's dispatch: element type and head-dim bucket pick the template instance, whose key block
// fixes the schedule and so the workspace.
#include "general/backward_schedule.h"
#include "general/general.cuh"
#include "general/general.h"

namespace flashsci::kernels::general {
namespace {

// The head-dim bucket p runs in, or 0 for a head_dim the general path does not take.
int bucket(const Problem& p) {
    if (p.head_dim < kHeadDimStep || p.head_dim > kMaxHeadDim || p.head_dim % kHeadDimStep != 0) return 0;
    for (const int head_dim : kHeadDimBuckets)
        if (p.head_dim <= head_dim) return head_dim;
    return 0;
}

BackwardSchedule schedule(const Problem& p, const Gradients& g, int num_sms) {
    return backward_schedule(p, g.deterministic, num_sms, backward_tile_shape(bucket(p)).keys);
}

template <typename T>
cudaError_t launch_element(const Problem& p, const Gradients& g, void* workspace, int num_sms,
                           cudaStream_t stream) {
    const BackwardSchedule s = schedule(p, g, num_sms);
    switch (bucket(p)) {
        case kHeadDimBuckets[0]:
            return launch_backward_bucket<T, kHeadDimBuckets[0]>(p, g, s, workspace, num_sms, stream);
        case kHeadDimBuckets[1]:
            return launch_backward_bucket<T, kHeadDimBuckets[1]>(p, g, s, workspace, num_sms, stream);
        case kHeadDimBuckets[2]:
            return launch_backward_bucket<T, kHeadDimBuckets[2]>(p, g, s, workspace, num_sms, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace

size_t backward_workspace_bytes(const Problem& p, const Gradients& g, int num_sms) {
    if (bucket(p) == 0) return 0;
    return schedule(p, g, num_sms).bytes;
}

cudaError_t launch_backward(const Problem& p, const Gradients& g, void* workspace, int num_sms, cudaStream_t stream) {
    if (bucket(p) == 0 || (workspace == nullptr && backward_workspace_bytes(p, g, num_sms) > 0))
        return cudaErrorInvalidValue;
    switch (p.element) {
        case Element::f16: return launch_element<__half>(p, g, workspace, num_sms, stream);
        case Element::bf16: return launch_element<__nv_bfloat16>(p, g, workspace, num_sms, stream);
        case Element::f32: return launch_element<float>(p, g, workspace, num_sms, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace flashsci::kernels::general
