// The general backward's bf16 instances.
#include "general/backward_kernel.cuh"

namespace flashsci::kernels::general {

template cudaError_t launch_backward_bucket<__nv_bfloat16, 64>(const Problem&, const Gradients&,
                                                               const BackwardSchedule&, void*, int, cudaStream_t);
template cudaError_t launch_backward_bucket<__nv_bfloat16, 128>(const Problem&, const Gradients&,
                                                                const BackwardSchedule&, void*, int, cudaStream_t);
template cudaError_t launch_backward_bucket<__nv_bfloat16, 256>(const Problem&, const Gradients&,
                                                                const BackwardSchedule&, void*, int, cudaStream_t);

}  // namespace flashsci::kernels::general
