// The decoding path's bf16 instances.
#include "decode/decode_kernel.cuh"

namespace flashsci::kernels::decode {

template cudaError_t launch_bucket<__nv_bfloat16, 64>(const Problem&, const Split&, cudaStream_t);
template cudaError_t launch_bucket<__nv_bfloat16, 128>(const Problem&, const Split&, cudaStream_t);
template cudaError_t launch_bucket<__nv_bfloat16, 256>(const Problem&, const Split&, cudaStream_t);

}  // namespace flashsci::kernels::decode
