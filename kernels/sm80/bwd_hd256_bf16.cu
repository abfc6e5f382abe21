// sm_80 backward instances: head-dim bucket 256, bf16 (every mask, window, softcap, ALiBi, dense or varlen).
#include "sm80/bwd_kernel.cuh"

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_BWD_INSTANCES(, __nv_bfloat16, 256)
}  // namespace flashsci::kernels::sm80
