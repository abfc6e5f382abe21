// The decoding path's fp16 instances.
#include "decode/decode_kernel.cuh"

namespace flashsci::kernels::decode {

template cudaError_t launch_bucket<__half, 64>(const Problem&, const Split&, cudaStream_t);
template cudaError_t launch_bucket<__half, 128>(const Problem&, const Split&, cudaStream_t);
template cudaError_t launch_bucket<__half, 256>(const Problem&, const Split&, cudaStream_t);

}  // namespace flashsci::kernels::decode
