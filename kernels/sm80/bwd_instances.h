// The sm_80 backward main kernel's instances. cmake/sm80_instances.cmake generates one file per (head-dim bucket,
// fp16/bf16) from bwd_tiles.h's rows, each defining the bucket's instance per shared-memory family with
// FLASHSCI_SM80_BWD_TILE (families whose rows agree share one kernel, compiled once in that file).
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
