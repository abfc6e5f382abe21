// What the backward's driver (cpu_backward.cpp) hands the blocked fast backward of one instruction set: plain
// numbers and pointers, as for the forward (fast_block.h), so the files built with AVX2 or AVX-512 flags call
// nothing of the rest of the library.
#pragma once

#include <cstdint>

#include "problem.h"

namespace flashsci::cpu {

// Per backward: the problem's numbers and the blocking.
struct FastBackwardProblem {
    kernels::Element element;
    int64_t head_dim;
    int64_t padded_dims;  // head_dim rounded up to the micro-tile width: row stride of the row buffers
    int64_t key_block;    // keys per block (dK and dV held at once), a multiple of the micro-tile width
    int64_t query_block;  // query rows per block of S, P, dP and dS
    float scale;
    float softcap;  // 0: off
};

// One work item: one kv head of one sequence with the query heads that read it (its group). Row pointers point at
// row 0 of the sequence; query-side tensors at the group's first query head, heads head_stride elements apart.
struct FastBackwardHead {
    const void* q;
    const void* o;
    const void* dout;
    void* dq;
    int64_t q_row_stride, q_head_stride, o_row_stride, o_head_stride;
    int64_t dout_row_stride, dout_head_stride, dq_row_stride, dq_head_stride;
    const void* k;
    const void* v;
    void* dk;
    void* dv;
    int64_t k_row_stride, v_row_stride, dk_row_stride, dv_row_stride;
    const float* lse;             // row 0 of the first query head; rows contiguous, heads lse_head_stride apart
    int64_t lse_head_stride;
    const float* alibi_slopes;    // the group's slopes, or null
    int64_t group, len_q, len_k;
    int64_t band_first, band_last;  // row i sees keys j with i + band_first <= j <= i + band_last, 0 <= j < len_k
    int64_t alibi_offset;           // s -= slope·|i + alibi_offset - j|
};

// Which part of a head's gradients an item computes: dQ, dK and dV, or some of them, over query heads
// [first_head, end_head) of the group (dK and dV sum over them), rows [first_row, end_row) and keys
// [first_key, end_key) of the sequence. dK and dV go rounded into their tensors or, with dk_sums, in fp32 into
// dk_sums and dv_sums ([len_k][padded_dims], key 0 of the sequence), for the driver to sum over the group's heads.
struct FastBackwardPart {
    bool dq, dkv;
    int64_t first_head, end_head;
    int64_t first_row, end_row;
    int64_t first_key, end_key;  // first_key a multiple of key_block
    float* dk_sums;
    float* dv_sums;
};

// A thread's buffers (sizes for the longest sequence, group·seqlen_q rows). The B operands of the products are in
// panels of `width` (the micro-tile width) columns, each panel's rows contiguous: a register tile then reads one
// block of memory, not a column of rows a power of two apart (which would share a few L1 sets).
struct FastBackwardScratch {
    float* queries;       // [group·len_q][padded_dims]
    float* query_panels;  // [padded_dims / width][group·len_q][width]: Q again, for dK
    float* douts;         // [group·len_q][padded_dims]
    float* dout_panels;   // [padded_dims / width][group·len_q][width]: dO again, for dV
    float* dq;         // [group·len_q][padded_dims]: scale·dS·K so far
    float* lse;        // [group·len_q]
    float* row_terms;  // [group·len_q]: D = rowsum(dO∘O)
    float* keys;       // [padded_dims / width][key_block][width]: K, for dQ; keys past the block's end zero
    float* keys_t;     // [key_block / width][padded_dims][width]: Kᵀ, for S
    float* values_t;   // [key_block / width][padded_dims][width]: Vᵀ, for dP
    float* dk;         // [key_block][padded_dims]
    float* dv;         // [key_block][padded_dims]
    float* probs;      // [query_block][key_block]: S, then P
    float* grads;      // [query_block][key_block]: dP, then scale·dS
};

// Runs one work item. Defined once per instruction set, in files built for it (fast_*.cpp).
using FastBackwardFunction = void (*)(const FastBackwardProblem&, const FastBackwardHead&, const FastBackwardPart&,
                                     const FastBackwardScratch&);
void fast_backward_portable(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                            const FastBackwardScratch& w);
#if defined(FLASHSCI_CPU_X86)
void fast_backward_avx2(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                        const FastBackwardScratch& w);
void fast_backward_avx512(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                          const FastBackwardScratch& w);
#endif

}  // namespace flashsci::cpu
