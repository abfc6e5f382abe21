// sm_90a forward instances: head_dim 64, bf16: banded (causal or windowed) or not × scores transformed (softcap, ALiBi)
// or not, but for the plain unbanded one: sm90_hd64_wide_bf16.cu's tile runs those problems.
#include "sm90/fwd_kernel.cuh"
#include "sm90/instances.h"

namespace flashsci::kernels::sm90 {
FLASHSCI_SM90_MASKED_AND_TRANSFORMED(, 64, __nv_bfloat16)
}  // namespace flashsci::kernels::sm90
