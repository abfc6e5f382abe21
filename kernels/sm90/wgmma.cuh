// WGMMA helpers: shared-memory descriptors for 128-byte-swizzled tiles, and the
// fence / commit / wait protocol around asynchronous warpgroup matrix multiplies.
#pragma once

#include <cstdint>

#include "sm90/tiles.h"
#include "sm90/wgmma_ops.cuh"

namespace flashsci::kernels::sm90 {

// Tiles are stored as 64-element (128-byte) column slabs, [cols/64][rows][64], each 8x128 B
// atom swizzled by TMA's SWIZZLE_128B (16-byte chunk index XOR row % 8).
constexpr int kSwizzleAtomBytes = 8 * kSlabRowBytes;  // 1024: tiles are aligned to this
constexpr int kMmaK = 16;                             // k extent of one wgmma

constexpr uint32_t kUnusedLeadingBytes = 16;            // K-major swizzled operands ignore it
constexpr uint64_t kDescSwizzle128 = uint64_t{1} << 62;

__device__ __forceinline__ uint64_t smem_desc(const void* smem, uint32_t leading_bytes, uint32_t stride_bytes) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    return uint64_t((addr & 0x3FFFF) >> 4) | uint64_t(leading_bytes >> 4) << 16 | uint64_t(stride_bytes >> 4) << 32 |
           kDescSwizzle128;
}

// K-major operand (Q or K as B of Q·Kᵀ): k-slab `kk` (16 elements) of a [cols/64][rows][64] tile.
// FromBase builds it as the tile's descriptor plus a constant (one 32-bit add: the address field, address / 16 in
// bits 0-13, never carries, shared memory lying below 2^18 bytes) instead of from the slab's address. Same bits;
// only ptxas's schedule differs, for better or worse by tile (tiles.h's qk_desc_from_base).
template <int Rows, bool FromBase>
__device__ __forceinline__ uint64_t desc_k_major(const void* tile, int kk) {
    constexpr int kStepsPerSlab = kSlabElems / kMmaK;
    const uint32_t offset = (kk / kStepsPerSlab) * Rows * kSlabRowBytes + (kk % kStepsPerSlab) * kMmaK * sizeof(uint16_t);
    if constexpr (FromBase) {
        const uint64_t base = smem_desc(tile, kUnusedLeadingBytes, kSwizzleAtomBytes);
        return (base >> 32) << 32 | uint32_t(uint32_t(base) + (offset >> 4));
    }
    return smem_desc(static_cast<const char*>(tile) + offset, kUnusedLeadingBytes, kSwizzleAtomBytes);
}

// N-major operand (V as B of P·V): rows kk·16 .. kk·16+15 of a [cols/64][Rows][64] tile;
// the N extent walks the column slabs (leading byte offset = one slab).
template <int Rows>
__device__ __forceinline__ uint64_t desc_n_major(const void* tile, int kk) {
    const char* p = static_cast<const char*>(tile) + kk * kMmaK * kSlabRowBytes;
    return smem_desc(p, Rows * kSlabRowBytes, kSwizzleAtomBytes);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }

// Waits until at most `Pending` committed groups are still running.
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(Pending) : "memory");
}

// Pins registers at this point of the instruction stream, so the compiler keeps reads and
// writes of wgmma operands on the right side of fence / wait.
template <int N>
__device__ __forceinline__ void pin(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

template <int Rows, int Cols>
__device__ __forceinline__ void pin(uint32_t (&r)[Rows][Cols]) {
#pragma unroll
    for (int i = 0; i < Rows; ++i)
#pragma unroll
        for (int j = 0; j < Cols; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}

}  // namespace flashsci::kernels::sm90
