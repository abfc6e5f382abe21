// Index math of the sm_80 backward, on the host and the device (tests/kernels/sm80 checks it on the CPU): the
// swizzled layout of its shared tiles (32-column P and dS tiles included), ldmatrix's lane addresses for plain and
// transposed operands, and which tiles need the mask.
#pragma once

#include <cstdint>

#include "general/backward_schedule.h"
#include "problem.h"
#include "sm80/bwd_tiles.h"
#include "sm80/index.h"

namespace flashsci::kernels::sm80 {

// ---- shared layout ----------------------------------------------------------------------------------------------
// A tile is [rows][chunks] 16-byte chunks. Rows of 8 or more chunks (128 bytes and up) put chunk c of row r at
// c ^ (r % 8), as the forward does; rows of 4 chunks (64 bytes: P and dS of 32 keys) at c ^ ((r / 2) % 4), so two
// rows share a 128-byte line and 8 consecutive rows at one logical chunk still fill 8 distinct 16-byte bank groups.
FLASHSCI_HOST_DEVICE constexpr int tile_chunk_offset(int chunks, int row, int chunk) {
    const int pattern = chunks >= kSwizzleRows ? row % kSwizzleRows : (row / 2) % kNarrowChunks;
    return (row * chunks + (chunk ^ pattern)) * kChunkElems;
}

// The element offset of (row, col).
FLASHSCI_HOST_DEVICE constexpr int tile_element_offset(int chunks, int row, int col) {
    return tile_chunk_offset(chunks, row, col / kChunkElems) + col % kChunkElems;
}

// ---- ldmatrix lane addresses ---------------------------------------------------------------------------------------
// One x4 ldmatrix loads a 16×16 block of 16-bit elements as four 8×8 matrices; lanes 8i .. 8i+7 name the 8 stored
// rows of matrix i, which lands in register i. Returned: {stored row, chunk} relative to the block's first stored
// row and chunk. Two patterns cover the five GEMMs:
//
// Row-major: lane l names stored row l % 16 of chunk l / 16. Plain, it gives the A fragment of a block stored
// [row][k] (a0..a3 = rows 0-7 / 8-15 × k 0-7 / 8-15: Q, dO, dS); transposed, the B fragments of two n8 blocks stored
// [k][n] (b0, b1 of n 0-7, then of n 8-15: dO, Q and K of dV, dK and dQ).
FLASHSCI_HOST_DEVICE constexpr RowCol row_major_address(int lane) { return {lane % 16, lane / 16}; }

// Pair-major: lane l names stored row 8·(l / 16) + l % 8 of chunk (l / 8) % 2. Plain, it gives the B fragments of
// two n8 blocks stored [n][k] (K and V of S and dP); transposed, the A fragment of a block stored [k][row] (Pᵀ and
// dSᵀ from P and dS stored [query][key]).
FLASHSCI_HOST_DEVICE constexpr RowCol pair_major_address(int lane) {
    return {(lane / 16) * 8 + lane % 8, (lane / 8) % 2};
}

// ---- per-lane addresses -------------------------------------------------------------------------------------------
// A warp's operand starts at stored row R0 (a multiple of 8) and chunk C0 (even) of a tile of `chunks` chunks per
// row. A lane keeps one shared address per chunk pair: pair i is its ldmatrix row at (R0 + at.row, C0 + 2i + at.col)
// (lane_pair_chunk); the 16×16 block at relative row R (a multiple of 8) and chunk C (even) is then pair
// lane_pair(chunks, C) plus block_offset(chunks, R, C) elements, an immediate: R and whole 8-chunk groups leave the
// lane's swizzle unchanged. 4 pairs for rows of 8 or more chunks, 2 for 4-chunk rows. Pairs past the row's end are
// never used; lane_pair_chunk keeps them inside it.
FLASHSCI_HOST_DEVICE constexpr int lane_pairs(int chunks) {
    return chunks >= kSwizzleRows ? kSwizzleRows / 2 : chunks / 2;
}
FLASHSCI_HOST_DEVICE constexpr int lane_pair_chunk(int chunks, int origin_chunk, int pair) {
    return (origin_chunk + 2 * pair) % chunks;
}
// The element offset of pair i of a lane whose ldmatrix pattern names `at`, for an operand at (row0, chunk0).
FLASHSCI_HOST_DEVICE constexpr int lane_pair_offset(int chunks, RowCol at, int row0, int chunk0, int pair) {
    return tile_chunk_offset(chunks, row0 + at.row, lane_pair_chunk(chunks, chunk0, pair) + at.col);
}
FLASHSCI_HOST_DEVICE constexpr int lane_pair(int chunks, int chunk) {
    return chunks >= kSwizzleRows ? (chunk % kSwizzleRows) / 2 : chunk / 2;
}
FLASHSCI_HOST_DEVICE constexpr int block_offset(int chunks, int row, int chunk) {
    return row * chunks * kChunkElems +
           (chunks >= kSwizzleRows ? (chunk / kSwizzleRows) * kSwizzleRows * kChunkElems : 0);
}

// ---- masking ------------------------------------------------------------------------------------------------------
// Whether the tile of query rows [q0, q0 + block_m) and keys [k0, k0 + block_n) needs the per-element mask: the
// band cuts it, or its keys run past the sequence's end (rows past the end need none: their Q and dO are zero and
// their P is zero through an LSE of +inf).
FLASHSCI_HOST_DEVICE inline bool tile_needs_mask(const KeyBand& band, int64_t q0, int block_m, int64_t k0, int block_n,
                                                 int64_t len_q, int64_t len_k) {
    return k0 + block_n > len_k || !general::tile_inside_band(band, q0, block_m, k0, block_n, len_q, len_k);
}

// Step t of a key block's walk (every query head of the GQA group, then each query block the key block meets).
struct BackwardStep {
    int64_t head, q_block;
};
FLASHSCI_HOST_DEVICE constexpr BackwardStep backward_step(int64_t t, int64_t first_head, int64_t first_block,
                                                          int64_t blocks) {
    return {first_head + t / blocks, first_block + t % blocks};
}
// The step after `step` in that walk: backward_step(t + 1, ...) from backward_step(t, ...) without a division.
FLASHSCI_HOST_DEVICE constexpr BackwardStep next_step(BackwardStep step, int64_t first_block, int64_t blocks) {
    return step.q_block + 1 < first_block + blocks ? BackwardStep{step.head, step.q_block + 1}
                                                   : BackwardStep{step.head + 1, first_block};
}

}  // namespace flashsci::kernels::sm80
