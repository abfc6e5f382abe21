// The compiled instances of the sm_80 forward, declared once; sm80_hd<D>_<type>.cu defines those of its bucket: one
// per distinct (block_m, block_n) of the bucket's rows in tiles.h for the type's element size (fp32's hd256 rows
// differ from fp16/bf16's).
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

#define FLASHSCI_SM80_INSTANCES_HD64(EXTERN, T) FLASHSCI_SM80_TILE(EXTERN, T, 64, 128, 128, 4)
#define FLASHSCI_SM80_INSTANCES_HD128(EXTERN, T) \
    FLASHSCI_SM80_TILE(EXTERN, T, 128, 64, 64, 4) FLASHSCI_SM80_TILE(EXTERN, T, 128, 128, 64, 4)
#define FLASHSCI_SM80_INSTANCES_HD256(EXTERN, T) \
    FLASHSCI_SM80_TILE(EXTERN, T, 256, 64, 64, 4) FLASHSCI_SM80_TILE(EXTERN, T, 256, 128, 64, 8)
#define FLASHSCI_SM80_INSTANCES_HD64_F32(EXTERN) FLASHSCI_SM80_TILE(EXTERN, float, 64, 128, 128, 8)
#define FLASHSCI_SM80_INSTANCES_HD128_F32(EXTERN) \
    FLASHSCI_SM80_TILE(EXTERN, float, 128, 64, 64, 4) FLASHSCI_SM80_TILE(EXTERN, float, 128, 128, 64, 8)
#define FLASHSCI_SM80_INSTANCES_HD256_F32(EXTERN) FLASHSCI_SM80_TILE(EXTERN, float, 256, 64, 16, 4)

namespace flashsci::kernels::sm80 {
FLASHSCI_SM80_INSTANCES_HD64(extern, __half)
FLASHSCI_SM80_INSTANCES_HD64(extern, __nv_bfloat16)
FLASHSCI_SM80_INSTANCES_HD128(extern, __half)
FLASHSCI_SM80_INSTANCES_HD128(extern, __nv_bfloat16)
FLASHSCI_SM80_INSTANCES_HD256(extern, __half)
FLASHSCI_SM80_INSTANCES_HD256(extern, __nv_bfloat16)
FLASHSCI_SM80_INSTANCES_HD64_F32(extern)
FLASHSCI_SM80_INSTANCES_HD128_F32(extern)
FLASHSCI_SM80_INSTANCES_HD256_F32(extern)
}  // namespace flashsci::kernels::sm80
