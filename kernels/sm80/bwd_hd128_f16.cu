// sm_80 backward instances: head-dim bucket 128, f16 (every mask, window, softcap, ALiBi, dense or varlen).
#include "sm80/bwd_kernel.cuh"

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_BWD_INSTANCES(, __half, 128)
}  // namespace flashsci::kernels::sm80
