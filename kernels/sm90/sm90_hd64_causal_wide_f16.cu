// sm_90a forward instance: head_dim 64, f16, the wide tile (192×128, three consumers) for causal problems without a
// window, softcap or ALiBi from 2048 keys.
#include "sm90/fwd_kernel.cuh"
#include "sm90/instances.h"

namespace flashsci::kernels::sm90 {
FLASHSCI_SM90_WIDE_INSTANCE(, 64, __half, true)
}  // namespace flashsci::kernels::sm90
