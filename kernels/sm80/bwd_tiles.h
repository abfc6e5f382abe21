// Tile table of the sm_80 backward: one row per (head-dim bucket, shared-memory family), checked against the limits.
#pragma once

#include <cstddef>

#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {

// Every backward CTA has 8 warps; each of its five GEMMs spreads them over its output in its own warp grid.
constexpr int kBackwardWarps = 8;
constexpr int kBackwardThreads = kBackwardWarps * kWarpThreads;
constexpr int kNarrowChunks = 4;  // a 32-column tile (4 chunks) swizzles in 64-byte rows (bwd_index.h)

// block_m query rows × block_n keys per step. K and V of the key block stay in shared memory; Q and dO stream
// through one buffer each (single) or two (double: the next step's load overlaps this step's GEMMs); P and dS of
// the step are staged for the transposed GEMMs. Shared memory = 2 bytes · [(2 or 4)·block_m·head_dim (Q, dO) +
// 2·block_n·head_dim (K, V) + 2·block_m·block_n (P, dS)].
// Warp grids: S and dP (block_m × block_n) have sdp_warps_m warps along the rows; dK and dV (block_n × head_dim)
// dkv_warps_n along the keys; dQ (block_m × head_dim / dq passes) dq_warps_m along the rows; the other warps split
// the columns.
// The shapes follow FlashAttention-2's backward (ENGINE-NOTES §A2) with dK and dV kept to 64 accumulators per
// thread: hd64 64×128; hd128 64×64; hd256 64×32 (32×32 on 99 KB parts).
struct BackwardTileConfig {
    int head_dim;
    Family family;
    int block_m, block_n;
    bool double_buffer;
    int sdp_warps_m, dkv_warps_n, dq_warps_m;
};
constexpr BackwardTileConfig kBackwardTiles[] = {
    {64, Family::small, 64, 128, true, 2, 4, 4},  {64, Family::medium, 64, 128, true, 2, 4, 4},
    {64, Family::large, 64, 128, true, 2, 4, 4},  {128, Family::small, 64, 64, false, 4, 4, 4},
    {128, Family::medium, 64, 64, true, 4, 4, 4}, {128, Family::large, 64, 64, true, 4, 4, 4},
    {256, Family::small, 32, 32, false, 2, 2, 2}, {256, Family::medium, 64, 32, false, 4, 2, 4},
    {256, Family::large, 64, 32, true, 4, 2, 4},
};

constexpr BackwardTileConfig backward_tile_config(int head_dim, Family family) {
    for (const BackwardTileConfig& t : kBackwardTiles)
        if (t.head_dim == head_dim && t.family == family) return t;
    return {head_dim, family, 0, 0, false, 0, 0, 0};
}

constexpr size_t backward_smem_bytes(int head_dim, int block_m, int block_n, bool double_buffer) {
    const size_t element = 2;
    const size_t q_do = size_t(double_buffer ? 4 : 2) * size_t(block_m) * size_t(head_dim);
    return element * (q_do + 2 * size_t(block_n) * size_t(head_dim) + 2 * size_t(block_m) * size_t(block_n));
}

// dQ = dS·K runs in column passes of head_dim / passes columns, so that its accumulators (a step's partial dQ, added to
// the workspace at once) stay at kMaxDqRegisters per thread beside dK's and dV's.
constexpr int kMaxDqRegisters = 16;
constexpr int backward_dq_passes(int head_dim, int block_m) {
    const int registers = block_m * head_dim / kBackwardThreads;
    return registers > kMaxDqRegisters ? registers / kMaxDqRegisters : 1;
}

// A GEMM's warp grid: warps_m × (kBackwardWarps / warps_m) warps over a rows × cols output, each warp
// m_tiles × n_tiles m16n8 tiles.
template <int Rows, int Cols, int WarpsM>
struct WarpGrid {
    static constexpr int warps_m = WarpsM, warps_n = kBackwardWarps / WarpsM;
    static constexpr int warp_rows = Rows / warps_m, warp_cols = Cols / warps_n;
    static constexpr int m_tiles = warp_rows / kMmaM, n_tiles = warp_cols / kMmaN;
    static_assert(kBackwardWarps % WarpsM == 0 && Rows % (WarpsM * kMmaM) == 0 && Cols % (warps_n * kMmaN) == 0,
                  "the warps tile the output in whole m16n8 tiles");
    // warp w's first row and column
    static constexpr int row0(int warp) { return warp % warps_m * warp_rows; }
    static constexpr int col0(int warp) { return warp / warps_m * warp_cols; }
};

// The compile-time shape of one backward instance.
template <int HeadDim, int BlockM, int BlockN, bool DoubleBuffer, int SdpWarpsM, int DkvWarpsN, int DqWarpsM>
struct BackwardShape {
    static constexpr int head_dim = HeadDim, block_m = BlockM, block_n = BlockN;
    static constexpr bool double_buffer = DoubleBuffer;
    static constexpr int stages = DoubleBuffer ? 2 : 1;
    static constexpr int threads = kBackwardThreads;
    static constexpr int chunks = HeadDim / kChunkElems;   // 16-byte chunks of a Q, dO, K or V row
    static constexpr int p_chunks = BlockN / kChunkElems;  // of a P or dS row
    static constexpr size_t smem = backward_smem_bytes(HeadDim, BlockM, BlockN, DoubleBuffer);
    using Sdp = WarpGrid<BlockM, BlockN, SdpWarpsM>;   // S = Q·Kᵀ, dP = dO·Vᵀ
    using Dkv = WarpGrid<BlockN, HeadDim, DkvWarpsN>;  // dV += Pᵀ·dO, dK += dSᵀ·Q
    static constexpr int dq_passes = backward_dq_passes(HeadDim, BlockM);
    using Dq = WarpGrid<BlockM, HeadDim / dq_passes, DqWarpsM>;  // dQ = dS·K, one column pass
    static constexpr int dkv_registers = 2 * Dkv::m_tiles * Dkv::n_tiles * 4;
    static constexpr int sdp_registers = 2 * Sdp::m_tiles * Sdp::n_tiles * 4;
    static constexpr int dq_registers = Dq::m_tiles * Dq::n_tiles * 4;

    static_assert(HeadDim % kMmaK == 0 && BlockM % kMmaK == 0 && BlockN % kMmaK == 0, "whole k16 steps");
    static_assert(chunks % kSwizzleRows == 0, "Q, dO, K and V rows swizzle in groups of 8 chunks");
    static_assert(p_chunks % kSwizzleRows == 0 || p_chunks == kNarrowChunks, "P and dS rows swizzle");
    static_assert(Dkv::n_tiles % 2 == 0 && Dq::n_tiles % 2 == 0, "dO, Q and K load as B in n16 pairs");
    static_assert(HeadDim % (dq_passes * Dq::warps_n * 2 * kMmaN) == 0, "dQ passes split head_dim evenly");
    static_assert(dkv_registers + (sdp_registers > dq_registers ? sdp_registers : dq_registers) <= 160,
                  "accumulators leave registers for fragments and addresses");
};

// Every row of the table fits its family's shared memory and has whole warp grids.
constexpr bool backward_table_fits() {
    for (const BackwardTileConfig& t : kBackwardTiles) {
        if (t.block_m == 0 ||
            backward_smem_bytes(t.head_dim, t.block_m, t.block_n, t.double_buffer) > family_smem(t.family))
            return false;
        if (kBackwardWarps % t.sdp_warps_m || kBackwardWarps % t.dkv_warps_n || kBackwardWarps % t.dq_warps_m)
            return false;
    }
    return true;
}
static_assert(backward_table_fits(), "a backward tile exceeds its family's shared memory");

constexpr bool backward_table_complete() {
    for (const int b : kHeadDimBuckets)
        for (const Family f : {Family::small, Family::medium, Family::large})
            if (backward_tile_config(b, f).block_m == 0) return false;
    return true;
}
static_assert(backward_table_complete(), "every (bucket, family) needs a backward tile");

// The smallest block_n of a bucket's rows: the most key blocks, so the most deterministic dQ slices (the workspace is
// sized for it, whichever family runs).
constexpr int backward_min_block_n(int head_dim) {
    int n = 0;
    for (const BackwardTileConfig& t : kBackwardTiles)
        if (t.head_dim == head_dim && (n == 0 || t.block_n < n)) n = t.block_n;
    return n;
}

}  // namespace flashsci::kernels::sm80
