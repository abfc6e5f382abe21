// Tile table of the sm_80 forward: one row per (head-dim bucket, shared-memory family), checked against the limits.
#pragma once

#include <cstddef>

namespace flashsci::kernels::sm80 {

constexpr int kMmaM = 16;       // query rows of one warp's m16n8k16: warps stack along M, a row never leaves its warp
constexpr int kMmaK = 16;       // the k extent of m16n8k16 (Q·Kᵀ over head_dim, P·V over keys)
constexpr int kMmaN = 8;        // the n extent of m16n8k16
constexpr int kChunkBytes = 16;  // one cp.async, one ldmatrix row
constexpr int kChunkElems = 8;   // 2-byte elements per chunk
constexpr int kMmaKTf32 = 8;     // the k extent of m16n8k8 (tf32)
constexpr int kSwizzleRows = 8;  // the swizzle permutes the chunks of 8 consecutive rows (index.h)
constexpr int kMaxWarps = 8;
constexpr int kWarpThreads = 32;
constexpr int kMaxThreadRegisters = 255;
constexpr int kRegisterFile = 65536;

// Opt-in shared memory per block of the families (CUDA Programming Guide): 227 KB on sm_90 and sm_100, 163 KB on
// sm_80 and sm_87, 99 KB on sm_86, sm_89 and sm_120. A device runs the row of the largest family it can hold.
enum class Family : int { small, medium, large };
constexpr size_t kFamilySmem[] = {99 * 1024, 163 * 1024, 227 * 1024};
constexpr size_t family_smem(Family f) { return kFamilySmem[int(f)]; }

// Head dims run in the smallest bucket that holds them (padded columns read as zero and are never written).
// Three buckets keep the build small; a head_dim between them pays the padding (96 runs at 128's cost).
constexpr int kHeadDimBuckets[] = {64, 128, 256};
constexpr int kHeadDimStep = 8;  // head_dim is whole 16-byte chunks
constexpr int kMaxHeadDim = 256;

// block_m query rows on `warps` warps and block_n keys per tile. Shared memory holds one Q, one K and one V tile:
// V(n) loads during Q·Kᵀ(n), K(n−1) during the softmax and P·V(n) (FlashAttention-2's pipeline), so it is
// 2·head_dim·(block_m + 2·block_n) bytes. hd64 and hd128 run 128 rows on 4 warps of 32 rows (FlashAttention-2's
// warps), so that each K and V fragment a warp loads feeds two m16 tiles, with fewer keys per step than its tiles:
// hd64 128×64 (its 128×128 holds 128 S accumulators per thread and spills; on an H100 the two ran level) and hd128
// 128×32 (its 128×64 spills 20-308 bytes and ran 3-6 % faster on an H100). On 99 KB parts hd128 runs 64×64: two
// CTAs per SM. hd256 runs 128×64 on 8 warps where 163 KB allow it, else 64×64 on 4 (Hopper's choice: 96 KB, two
// CTAs per SM of 227 KB): its 128 O accumulators per m tile leave no registers for a second one.
//
// fp32 (element_bytes 4) doubles the bytes: hd64 keeps 128×128 (96 KB), hd128 128×64 (128 KB; 64×64 on 99 KB
// parts); hd256 takes 64×16 (96 KB) everywhere: its 128 O accumulators and the 3xTF32 operand halves leave no
// registers for more keys per step (64×32 and 64×64 spill). fp32 warps own 16 rows: the 3xTF32 operand halves
// leave no registers for a second m tile.
struct TileConfig {
    int head_dim;
    Family family;
    int element_bytes;
    int block_m, block_n, warps;
};
constexpr TileConfig kTiles[] = {
    {64, Family::small, 2, 128, 64, 4},   {64, Family::medium, 2, 128, 64, 4},  {64, Family::large, 2, 128, 64, 4},
    {128, Family::small, 2, 64, 64, 4},   {128, Family::medium, 2, 128, 32, 4}, {128, Family::large, 2, 128, 32, 4},
    {256, Family::small, 2, 64, 64, 4},   {256, Family::medium, 2, 128, 64, 8}, {256, Family::large, 2, 64, 64, 4},
    {64, Family::small, 4, 128, 128, 8},  {64, Family::medium, 4, 128, 128, 8}, {64, Family::large, 4, 128, 128, 8},
    {128, Family::small, 4, 64, 64, 4},   {128, Family::medium, 4, 128, 64, 8}, {128, Family::large, 4, 128, 64, 8},
    {256, Family::small, 4, 64, 16, 4},   {256, Family::medium, 4, 64, 16, 4},  {256, Family::large, 4, 64, 16, 4},
};

constexpr TileConfig tile_config(int head_dim, Family family, int element_bytes = 2) {
    for (const TileConfig& t : kTiles)
        if (t.head_dim == head_dim && t.family == family && t.element_bytes == element_bytes) return t;
    return {head_dim, family, element_bytes, 0, 0, 0};
}

// The bucket of head_dim, or 0 when none holds it.
constexpr int head_dim_bucket(long long head_dim) {
    for (const int b : kHeadDimBuckets)
        if (head_dim <= b) return b;
    return 0;
}

constexpr size_t smem_bytes(int head_dim, int block_m, int block_n, int element_bytes) {
    return size_t(element_bytes) * size_t(head_dim) * size_t(block_m + 2 * block_n);
}

// The compile-time shape of one instance, for elements of ElementBytes (2: fp16/bf16, 4: fp32): Warps warps of
// m_tiles 16-row tiles each.
template <int HeadDim, int BlockM, int BlockN, int Warps, int ElementBytes = 2>
struct TileShape {
    static constexpr int head_dim = HeadDim, block_m = BlockM, block_n = BlockN;
    static constexpr int warps = Warps;
    static constexpr int m_tiles = BlockM / (kMmaM * Warps);
    static constexpr int threads = warps * kWarpThreads;
    static constexpr int chunk_elems = kChunkBytes / ElementBytes;  // elements per 16-byte chunk
    static constexpr int chunks = HeadDim / chunk_elems;            // 16-byte chunks per shared row
    static constexpr size_t smem = smem_bytes(HeadDim, BlockM, BlockN, ElementBytes);
    static constexpr int s_registers = m_tiles * BlockN / 2;   // a thread's S accumulators: 16·m_tiles×block_n over 32 lanes
    static constexpr int o_registers = m_tiles * HeadDim / 2;  // its O accumulators: 16·m_tiles×head_dim over 32 lanes

    static_assert(warps >= 1 && warps <= kMaxWarps && BlockM == m_tiles * kMmaM * warps, "whole warps of whole m tiles");
    static_assert(ElementBytes == 2 || ElementBytes == 4, "fp16/bf16 or fp32");
    static_assert(BlockN % kMmaK == 0, "block_n is whole k16 steps of P·V (pairs of 8-key blocks for ldmatrix of K)");
    static_assert(HeadDim % kMmaK == 0, "the bucket is whole k16 steps of Q·Kᵀ");
    static_assert(chunks % kSwizzleRows == 0, "the swizzle permutes chunks within a row");
    static_assert(BlockM * chunks % threads == 0 && BlockN * chunks % threads == 0, "tile loads split evenly");
    static_assert(s_registers + o_registers <= 192, "S and O leave too few registers for fragments and addresses");
    static_assert(threads * kMaxThreadRegisters <= kRegisterFile, "every thread may hold 255 registers");
};

// Every row of the table fits its family's shared memory and is a valid TileShape.
constexpr bool table_fits() {
    for (const TileConfig& t : kTiles)
        if (t.block_m == 0 || smem_bytes(t.head_dim, t.block_m, t.block_n, t.element_bytes) > family_smem(t.family) ||
            t.warps < 1 || t.block_m % (kMmaM * t.warps) != 0)
            return false;
    return true;
}
static_assert(table_fits(), "a tile exceeds its family's shared memory");

constexpr bool table_complete() {
    for (const int b : kHeadDimBuckets)
        for (const Family f : {Family::small, Family::medium, Family::large})
            for (const int bytes : {2, 4})
                if (tile_config(b, f, bytes).block_m == 0) return false;
    return true;
}
static_assert(table_complete(), "every (bucket, family) needs a tile");

}  // namespace flashsci::kernels::sm80
