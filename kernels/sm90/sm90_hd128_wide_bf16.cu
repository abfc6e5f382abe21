// sm_90a forward instance: head_dim 128, bf16, the wide tile for dense plain problems with long key sequences.
#include "sm90/fwd_kernel.cuh"
#include "sm90/instances.h"

namespace flashsci::kernels::sm90 {
FLASHSCI_SM90_WIDE_INSTANCE(, 128, __nv_bfloat16, false)
}  // namespace flashsci::kernels::sm90
