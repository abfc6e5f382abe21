// sm_80 forward instances: head-dim bucket 128, fp32 on tf32 tensor cores (3xTF32 and one-pass TF32).
#include "sm80/fwd_kernel.cuh"

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_INSTANCES_HD128_F32()
}  // namespace flashsci::kernels::sm80
