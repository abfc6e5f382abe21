// The compiled instances of the sm_80 backward's main kernel, declared once; bwd_hd<D>_<type>.cu defines those of
// its bucket: one per shared-memory family (families whose tiles.h rows agree share one kernel).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "general/backward_schedule.h"
#include "problem.h"
#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {

// Enqueues the main kernel of p's backward (element type T, head_dim <= HeadDim) on the tile of bwd_tiles.h's row
// (HeadDim, F), with the schedule `s` (whose key blocks are that tile's block_n), D in row_dot and the dQ
// accumulator, both laid out as `s` says and prepared by the D pre-pass. Returns the launch's error.
template <typename T, int HeadDim, Family F>
cudaError_t launch_backward_tile(const Problem& p, const Gradients& g, const general::BackwardSchedule& s,
                                 const float* row_dot, float* dq_accum, cudaStream_t stream);

}  // namespace flashsci::kernels::sm80

#define FLASHSCI_SM80_BWD_TILE(EXTERN, T, D, F)                \
    EXTERN template cudaError_t launch_backward_tile<T, D, F>( \
        const Problem&, const Gradients&, const general::BackwardSchedule&, const float*, float*, cudaStream_t);

#define FLASHSCI_SM80_BWD_INSTANCES(EXTERN, T, D)        \
    FLASHSCI_SM80_BWD_TILE(EXTERN, T, D, Family::small)  \
    FLASHSCI_SM80_BWD_TILE(EXTERN, T, D, Family::medium) \
    FLASHSCI_SM80_BWD_TILE(EXTERN, T, D, Family::large)

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_BWD_INSTANCES(extern, __half, 64)
FLASHSCI_SM80_BWD_INSTANCES(extern, __nv_bfloat16, 64)
FLASHSCI_SM80_BWD_INSTANCES(extern, __half, 128)
FLASHSCI_SM80_BWD_INSTANCES(extern, __nv_bfloat16, 128)
FLASHSCI_SM80_BWD_INSTANCES(extern, __half, 256)
FLASHSCI_SM80_BWD_INSTANCES(extern, __nv_bfloat16, 256)
}  // namespace flashsci::kernels::sm80
