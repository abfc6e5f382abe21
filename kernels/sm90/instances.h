// Defines one compiled instance of the sm_90a forward. Each instance's .cu is generated from instance.cu.in by
// cmake/sm90_instances.cmake, for every instance that tiles.h's has_instance() names.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "sm90/fwd_params.h"
#include "sm90/tiles.h"

#define FLASHSCI_SM90_INSTANCE(D, T, BANDED, TRANSFORMED, WIDE)                                                       \
    static_assert(has_instance(D, BANDED, TRANSFORMED, WIDE), "not an instance of the tile table (tiles.h)");          \
    template cudaError_t launch_fwd<D, T, BANDED, TRANSFORMED, WIDE>(const FwdParams&, const FwdMaps&, int,            \
                                                                     cudaStream_t);                                    \
    template bool fwd_ready<D, T, BANDED, TRANSFORMED, WIDE>();
