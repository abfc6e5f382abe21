// Index math of the sm_80 forward, on the host and the device (tests/kernels/sm80 checks it on the CPU): the
// swizzled shared layout, the mma.sync fragment maps and ldmatrix's lane addresses, the key tiles of a query tile.
#pragma once

#include <cstdint>

#include "problem.h"
#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {

struct RowCol {
    int row, col;
};

// ---- shared layout ----------------------------------------------------------------------------------------------
// A tile is [rows][chunks] 16-byte chunks; chunk c of row r sits at chunk c ^ (r % 8) of its row, so the 8 rows one
// ldmatrix matrix reads (8 consecutive rows, one logical chunk) fall on 8 distinct 16-byte bank groups, as do the
// chunks a cp.async pass writes. Returns the element offset of the chunk's first element, for `elems` elements per
// chunk (8 of 2 bytes, 4 of fp32).
FLASHSCI_HOST_DEVICE constexpr int swizzled_offset(int chunks, int row, int chunk, int elems = kChunkElems) {
    return (row * chunks + (chunk ^ (row % kSwizzleRows))) * elems;
}

// The same offset as a row part and a column part: for a row r, chunk c lies at row_offset(r) + 8·(c − c % 8) +
// group_column(c % 8, r % 8), so a lane whose rows all share r % 8 needs one register per c % 8 it reads and
// folds the rest into immediates.
FLASHSCI_HOST_DEVICE constexpr int row_offset(int chunks, int row, int elems = kChunkElems) { return row * chunks * elems; }
FLASHSCI_HOST_DEVICE constexpr int group_column(int chunk_in_group, int row_in_group, int elems = kChunkElems) {
    return (chunk_in_group ^ row_in_group) * elems;
}

// Tile loads: `threads` threads copy a [rows][chunks] tile in passes of row_step rows × col_step chunks. Thread t
// starts at load_first() and copies rows first.row + i·row_step, chunks first.col + j·col_step. row_step is a multiple
// of 8 and col_step of 8 (or all the chunks), so chunk ^ (row % 8) moves with neither: one shared column per thread.
struct LoadAssignment {
    int row_step, col_step;
};
FLASHSCI_HOST_DEVICE constexpr LoadAssignment load_assignment(int threads, int chunks) {
    const int col_step = chunks < threads / kSwizzleRows ? chunks : threads / kSwizzleRows;
    return {threads / col_step, col_step};
}
FLASHSCI_HOST_DEVICE constexpr RowCol load_first(int threads, int chunks, int thread) {
    const int col_step = load_assignment(threads, chunks).col_step;
    return {thread / col_step, thread % col_step};
}

// ---- fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"); g = lane / 4, c = lane % 4 ------------------------

// C (and D) element i of lane: (g, 2c), (g, 2c+1), (g+8, 2c), (g+8, 2c+1).
FLASHSCI_HOST_DEVICE constexpr RowCol c_element(int lane, int i) {
    return {lane / 4 + (i / 2) * 8, 2 * (lane % 4) + i % 2};
}

// A register r of lane holds (row, k) and (row, k + 1): (g, 2c), (g+8, 2c), (g, 2c+8), (g+8, 2c+8).
FLASHSCI_HOST_DEVICE constexpr RowCol a_pair(int lane, int r) {
    return {lane / 4 + (r % 2) * 8, 2 * (lane % 4) + (r / 2) * 8};
}

// B register r of lane holds (k, n) and (k + 1, n): (2c, g), (2c+8, g); returned as {k, n}.
FLASHSCI_HOST_DEVICE constexpr RowCol b_pair(int lane, int r) { return {2 * (lane % 4) + r * 8, lane / 4}; }

// ---- ldmatrix lane addresses (x4: lanes 8i .. 8i+7 give the 8 rows of matrix i, which lands in register i) ---------
// {row, chunk} within a 16-row, 2-chunk (16×16) block.
// Q as A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
FLASHSCI_HOST_DEVICE constexpr RowCol q_address(int lane) { return {lane % 16, lane / 16}; }
// K as B of two n8 blocks: matrices (keys 0-7, k 0-7), (keys 0-7, k 8-15), (keys 8-15, k 0-7), (keys 8-15, k 8-15)
// = b0, b1 of the first block, b0, b1 of the second.
FLASHSCI_HOST_DEVICE constexpr RowCol k_address(int lane) { return {(lane / 16) * 8 + lane % 8, (lane / 8) % 2}; }
// V as B (ldmatrix.trans: rows are keys = k) of two n8 blocks of head_dim: matrices (keys 0-7, d 0-7), (keys 8-15,
// d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15) = b0, b1 of the first block, b0, b1 of the second.
FLASHSCI_HOST_DEVICE constexpr RowCol v_address(int lane) { return {((lane / 8) % 2) * 8 + lane % 8, lane / 16}; }

// tf32 m16n8k8 (PTX ISA, "Matrix Fragments for mma.m16n8k8" .tf32): A register r holds (g + 8·(r%2), c + 4·(r/2)),
// B register r holds (k c + 4r, n g); C as above. ldmatrix of fp32 rows (a 16-byte chunk is 4 of them) with the lane
// addresses above yields them (a k8 step is 2 chunks, as a k16 step of 16-bit elements): register r of q_address()
// is A register r, registers 2j, 2j+1 of k_address() are B registers 0, 1 of n block j.
FLASHSCI_HOST_DEVICE constexpr RowCol tf32_a(int lane, int r) { return {lane / 4 + (r % 2) * 8, lane % 4 + (r / 2) * 4}; }
FLASHSCI_HOST_DEVICE constexpr RowCol tf32_b(int lane, int r) { return {lane % 4 + r * 4, lane / 4}; }

// tf32 P·V relabels the 8 keys of a k8 step: k index c + 4h of the A and B fragments stands for key 2c + h, so A
// register r is C element tf32_p_element(r) of the step's C block (keys 2c, 2c+1 of rows g, g+8), and B register h is
// V's row 2c + h (loaded with one 32-bit shared load each: there is no 32-bit ldmatrix.trans).
FLASHSCI_HOST_DEVICE constexpr int tf32_key(int k) { return 2 * (k % 4) + k / 4; }
FLASHSCI_HOST_DEVICE constexpr int tf32_p_element(int r) { return 2 * (r % 2) + r / 2; }

// P·V's A fragment from S's C fragments: k slab j (keys 16j .. 16j+15) is C blocks 2j and 2j+1, register r of it
// packs C elements (2·(r%2), 2·(r%2)+1) of block 2j + r/2.
FLASHSCI_HOST_DEVICE constexpr int p_block(int slab, int r) { return 2 * slab + r / 2; }
FLASHSCI_HOST_DEVICE constexpr int p_element(int r) { return 2 * (r % 2); }

// ---- tile schedule ------------------------------------------------------------------------------------------------
// In the integer type Int: the kernel's is int (sequences under 2^30 and the band clamped by clamp_band()), the tests'
// int64_t. Row i sees key j iff i + first <= j <= i + last and 0 <= j < len_k (problem.h: key_band()).
template <typename Int>
struct Band {
    Int first, last;
};

// The band of a sequence with len_q queries and len_k keys, clamped to [−len_q, len_k]: a bound past that holds for
// every row and key alike, so the clamped band selects the same keys, and row + bound stays within ±2^31 when both
// lengths are under 2^30.
FLASHSCI_HOST_DEVICE inline Band<int> clamp_band(const KeyBand& band, int64_t len_q, int64_t len_k) {
    return {int(band.first < -len_q ? -len_q : band.first), int(band.last > len_k ? len_k : band.last)};
}

// Key tiles [first, end) of block_n keys that rows q0 .. q0 + rows - 1 see under `band` with len_k keys; first ==
// end when they see none.
template <typename Int>
struct TileRange {
    Int first, end;
};
template <typename Int>
FLASHSCI_HOST_DEVICE inline TileRange<Int> key_tiles(const Band<Int>& band, Int q0, Int rows, Int len_k, int block_n) {
    const Int first_key = q0 + band.first > 0 ? q0 + band.first : 0;
    const Int last_key_band = q0 + rows - 1 + band.last;
    const Int last_key = last_key_band < len_k - 1 ? last_key_band : len_k - 1;
    if (rows <= 0 || last_key < first_key) return {0, 0};
    return {first_key / block_n, last_key / block_n + 1};
}

// ⌊a / b⌋ and ⌈a / b⌉ for b > 0 and a of either sign.
template <typename Int>
FLASHSCI_HOST_DEVICE constexpr Int floor_div(Int a, Int b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}
template <typename Int>
FLASHSCI_HOST_DEVICE constexpr Int ceil_div(Int a, Int b) {
    return -floor_div<Int>(-a, b);
}

// Key tiles [first, end) whose every key each of rows q0 .. q0 + rows - 1 sees: no mask needed there. Tile kt
// qualifies iff its last key kt·block_n + block_n − 1 is under len_k and at most q0 + band.last, and its first key
// kt·block_n at least q0 + rows − 1 + band.first; two bounds the tile loop compares, not the band.
template <typename Int>
FLASHSCI_HOST_DEVICE inline TileRange<Int> unmasked_tiles(const Band<Int>& band, Int q0, Int rows, Int len_k,
                                                          int block_n) {
    const Int n = block_n;
    const Int first_from_band = ceil_div<Int>(q0 + rows - 1 + band.first, n);
    const Int first = first_from_band > 0 ? first_from_band : 0;
    const Int end_from_keys = floor_div<Int>(len_k, n), end_from_band = floor_div<Int>(q0 + band.last + 1, n);
    const Int end = end_from_keys < end_from_band ? end_from_keys : end_from_band;
    return {first, end > first ? end : first};
}

// Whether row `row` sees key `key` >= 0 (the band and the key count; rows are checked against len_q by the caller).
template <typename Int>
FLASHSCI_HOST_DEVICE inline bool key_visible(const Band<Int>& band, Int row, Int key, Int len_k) {
    return key < len_k && key >= row + band.first && key <= row + band.last;
}

}  // namespace flashsci::kernels::sm80
