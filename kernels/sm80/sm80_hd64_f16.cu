// sm_80 forward instances: head-dim bucket 64, f16 (every mask, window, softcap, ALiBi, dense or varlen).
#include "sm80/fwd_kernel.cuh"

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_INSTANCES_HD64(, __half)
}  // namespace flashsci::kernels::sm80
