// The compiled instances of the sm_90a forward, declared once; each sm90_hd<D>_<type>.cu defines four (hd64 three:
// its wide tile replaces the plain unbanded one, tiles.h), each sm90_hd<D>[_causal]_wide_<type>.cu a wide one.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "sm90/fwd_params.h"

#define FLASHSCI_SM90_INSTANCE(EXTERN, D, T, BANDED, TRANSFORMED)                                     \
    EXTERN template cudaError_t launch_fwd<D, T, BANDED, TRANSFORMED>(const FwdParams&, const FwdMaps&, int, \
                                                                      cudaStream_t);                         \
    EXTERN template bool fwd_ready<D, T, BANDED, TRANSFORMED>();

#define FLASHSCI_SM90_WIDE_INSTANCE(EXTERN, D, T, BANDED)                                                              \
    EXTERN template cudaError_t launch_fwd<D, T, BANDED, false, true>(const FwdParams&, const FwdMaps&, int, cudaStream_t); \
    EXTERN template bool fwd_ready<D, T, BANDED, false, true>();

#define FLASHSCI_SM90_MASKED_AND_TRANSFORMED(EXTERN, D, T)                                           \
    FLASHSCI_SM90_INSTANCE(EXTERN, D, T, true, false)                                                  \
    FLASHSCI_SM90_INSTANCE(EXTERN, D, T, false, true) FLASHSCI_SM90_INSTANCE(EXTERN, D, T, true, true)

#define FLASHSCI_SM90_INSTANCES(EXTERN, D, T) \
    FLASHSCI_SM90_INSTANCE(EXTERN, D, T, false, false) FLASHSCI_SM90_MASKED_AND_TRANSFORMED(EXTERN, D, T)

namespace flashsci::kernels::sm90 {
FLASHSCI_SM90_MASKED_AND_TRANSFORMED(extern, 64, __nv_bfloat16)
FLASHSCI_SM90_MASKED_AND_TRANSFORMED(extern, 64, __half)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 64, __nv_bfloat16, false)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 64, __half, false)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 64, __nv_bfloat16, true)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 64, __half, true)
FLASHSCI_SM90_INSTANCES(extern, 96, __nv_bfloat16)
FLASHSCI_SM90_INSTANCES(extern, 96, __half)
FLASHSCI_SM90_INSTANCES(extern, 128, __nv_bfloat16)
FLASHSCI_SM90_INSTANCES(extern, 128, __half)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 128, __nv_bfloat16, false)
FLASHSCI_SM90_WIDE_INSTANCE(extern, 128, __half, false)
FLASHSCI_SM90_INSTANCES(extern, 192, __nv_bfloat16)
FLASHSCI_SM90_INSTANCES(extern, 192, __half)
FLASHSCI_SM90_INSTANCES(extern, 256, __nv_bfloat16)
FLASHSCI_SM90_INSTANCES(extern, 256, __half)
}  // namespace flashsci::kernels::sm90
