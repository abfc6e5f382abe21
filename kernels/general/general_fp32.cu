// The general path's fp32 instances.
#include "general/general_kernel.cuh"

namespace flashsci::kernels::general {

template cudaError_t launch_bucket<float, 64>(const Problem&, const int*, int64_t, cudaStream_t);
template cudaError_t launch_bucket<float, 128>(const Problem&, const int*, int64_t, cudaStream_t);
template cudaError_t launch_bucket<float, 256>(const Problem&, const int*, int64_t, cudaStream_t);

}  // namespace flashsci::kernels::general
