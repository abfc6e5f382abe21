// What the common driver (cpu_attention.cpp) hands the blocked fast path of one instruction set: plain
// numbers and pointers, so that the files built with AVX2 or AVX-512 flags call nothing of the rest of
// the library (an inline function they emitted could be the copy the linker keeps for everyone).
#pragma once

#include <cstdint>

#include "cpu/cpu_isa.h"
#include "problem.h"

namespace flashsci::cpu {

// Register tile of the micro-kernels: rows × keys of S = Q·Kᵀ, rows × columns of O += P·V.
struct MicroTile {
    int rows;   // query rows per register tile
    int lanes;  // floats per vector
    int width;  // keys (S) or head dims (O) per register tile: two vectors
};

// Portable: 8-lane generic vectors. AVX2: 6 rows × 2 ymm = 12 accumulators + 2 loads + 1 broadcast of 16
// registers. AVX-512: 12 rows × 2 zmm = 24 accumulators of 32.
constexpr MicroTile kPortableTile{6, 8, 16};
constexpr MicroTile kAvx2Tile{6, 8, 16};
constexpr MicroTile kAvx512Tile{12, 16, 32};
static_assert(kAvx2Tile.rows * 2 + 3 <= 16, "AVX2 has 16 vector registers");
static_assert(kAvx512Tile.rows * 2 + 3 <= 32, "AVX-512 has 32 vector registers");

constexpr MicroTile micro_tile(Isa isa) {
    return isa == Isa::avx512 ? kAvx512Tile : isa == Isa::avx2 ? kAvx2Tile : kPortableTile;
}

// fp32 inputs: a row whose scores scale·|q|·|k| may exceed this (Cauchy-Schwarz, over the keys it sees in a
// tile) has them recomputed in fp64. Below it the fp32 dot product errs by at most head_dim·2⁻²⁴·32 (and
// typically by √head_dim·2⁻²⁴·|s|), which the softmax turns into the same relative error of the weights.
constexpr float kFp32ScoreBound = 32.0f;

// Per forward: the problem's numbers and the blocking.
struct FastProblem {
    kernels::Element element;
    int64_t head_dim;
    int64_t padded_dims;  // head_dim rounded up to the micro-tile width: row stride of the Q, O and V buffers
    int64_t block_rows;   // query rows per work item, a multiple of group_rows
    int64_t group_rows;   // query rows whose scores are held at once, a multiple of the micro-tile rows
    int64_t tile_keys;    // keys per K/V tile, a multiple of the micro-tile width
    int64_t micro_width;  // the micro-tile width
    float scale;
    float softcap;        // 0: off
};

// One work item: rows first_row .. first_row + rows - 1 of one query head of one sequence.
struct FastBlock {
    const void* q;  // row first_row of this head; rows q_row_stride elements apart
    void* o;
    const void* k;  // key 0 of the sequence, its kv head
    const void* v;
    int64_t q_row_stride, o_row_stride, k_row_stride, v_row_stride;
    float* lse;     // LSE of row first_row (the rows' LSEs are contiguous), or null
    int64_t first_row, rows, len_k;
    int64_t band_first, band_last;  // row i sees keys j with i + band_first <= j <= i + band_last, 0 <= j < len_k
    float alibi_slope;              // 0: off; else s -= slope·|i + alibi_offset - j|
    int64_t alibi_offset;
};

// A thread's buffers, sized by fast_scratch_floats().
struct FastScratch {
    float* queries;      // [block_rows][padded_dims]
    float* out;          // [block_rows][padded_dims], unnormalised
    double* row_max;     // [block_rows]
    float* row_sum;      // [block_rows]
    float* query_norm2;  // [block_rows], |q|²
    float* keys;         // [tile_keys / width][head_dim][width]: K transposed in panels of `width` keys
    float* values;       // [padded_dims / width][tile_keys][width]: V in panels of `width` head dims
    float* key_rows;     // [width][padded_dims]: K rows on their way to the panels, a vector's count at a time
    float* key_norm2;    // [tile_keys]
    float* scores;       // [group_rows][tile_keys]: S, then P in place
    float* correction;   // [group_rows]
    double* precise;     // [tile_keys]: one row's scores in fp64
};

// Runs one work item. Defined once per instruction set, in files built for it.
using FastBlockFunction = void (*)(const FastProblem&, const FastBlock&, const FastScratch&);
void fast_block_portable(const FastProblem& p, const FastBlock& b, const FastScratch& w);
#if defined(FLASHSCI_CPU_X86)
void fast_block_avx2(const FastProblem& p, const FastBlock& b, const FastScratch& w);
void fast_block_avx512(const FastProblem& p, const FastBlock& b, const FastScratch& w);
#endif

}  // namespace flashsci::cpu
