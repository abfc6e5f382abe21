// The general path's fp16 instances.
#include "general/general_kernel.cuh"

namespace flashsci::kernels::general {

template cudaError_t launch_bucket<__half, 64>(const Problem&, const int*, int64_t, cudaStream_t);
template cudaError_t launch_bucket<__half, 128>(const Problem&, const int*, int64_t, cudaStream_t);
template cudaError_t launch_bucket<__half, 256>(const Problem&, const int*, int64_t, cudaStream_t);

}  // namespace flashsci::kernels::general
