// The sm_80 forward's instances. cmake/sm80_instances.cmake generates one file per (head-dim bucket, element type)
// from tiles.h's rows, each defining an instance per distinct (block_m, block_n, warps) of the bucket's rows for
// the type's element size with FLASHSCI_SM80_TILE; sm80.cu reaches them through the same rows (launch_row).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "problem.h"

namespace flashsci::kernels::sm80 {

// Enqueues p (element type T, head_dim <= HeadDim) on BlockM × BlockN tiles; `redo`: the flags of redo_flags()
// (sm80.h), or null when p is not banded. fp32 takes p.precision's passes (tf32: one, else 3xTF32). Returns the
// launch's error.
template <typename T, int HeadDim, int BlockM, int BlockN, int Warps>
cudaError_t launch_tile(const Problem& p, int* redo, cudaStream_t stream);

}  // namespace flashsci::kernels::sm80

#define FLASHSCI_SM80_TILE(EXTERN, T, D, M, N, W) \
    EXTERN template cudaError_t launch_tile<T, D, M, N, W>(const Problem&, int*, cudaStream_t);
