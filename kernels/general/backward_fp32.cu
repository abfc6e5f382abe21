// The general backward's fp32 instances.
#include "general/backward_kernel.cuh"

namespace flashsci::kernels::general {

template cudaError_t launch_backward_bucket<float, 64>(const Problem&, const Gradients&, const BackwardSchedule&, void*,
                                                       int, cudaStream_t);
template cudaError_t launch_backward_bucket<float, 128>(const Problem&, const Gradients&, const BackwardSchedule&,
                                                        void*, int, cudaStream_t);
template cudaError_t launch_backward_bucket<float, 256>(const Problem&, const Gradients&, const BackwardSchedule&,
                                                        void*, int, cudaStream_t);

}  // namespace flashsci::kernels::general
