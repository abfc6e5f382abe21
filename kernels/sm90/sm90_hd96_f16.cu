// sm_90a forward instances: head_dim 96, f16: banded (causal or windowed) or not, scores transformed (softcap, ALiBi) or not.
#include "sm90/fwd_kernel.cuh"
#include "sm90/instances.h"

namespace flashsci::kernels::sm90 {
FLASHSCI_SM90_INSTANCES(, 96, __half)
}  // namespace flashsci::kernels::sm90
