// The blocked fast backward of the CPU backend, written once over a vector type V (simd_*.h) and built once per
// instruction set (fast_*.cpp), accumulating in fp32. A whole work item owns one kv head of one sequence and the
// query heads of its group, so each of its dQ, dK and dV elements has this one writer and a fixed order of sums. It
// converts Q, dO, the LSE and D = rowsum(dO∘O) of the group's rows once, then walks the keys a block at a time
// and, for each query head, the blocks of rows that see the key block:
//   S = Q·Kᵀ,  dP = dO·Vᵀ                 register tiles of rows × width, over head_dim
//   P = exp(scale·S - LSE),  dS = P∘(dP - D)   (softcap: times 1 - tanh²; ALiBi: minus the bias inside exp)
//   dV += Pᵀ·dO,  dK += scale·dSᵀ·Q,  dQ += scale·dS·K
// Where those items are fewer than the threads, the driver splits each into dQ items (one query head, a range of
// rows: S, dP, dS and dQ) and dK/dV items (a range of key blocks: S, dP, dS, dK and dV), 7 products instead of 5.
// Each gradient element is then the same sums in the same order (a row's dQ over the key blocks in order, a key's
// dK and dV over the heads and rows in order; every product's element is one chain of FMAs over its depth), so
// whole and split items give the same bits.
// Everything here has internal linkage and calls only intrinsics and builtins (see fast_block.h).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cpu/fast_backward.h"
#include "cpu/fast_kernel.h"
#include "cpu/half.h"

namespace flashsci::cpu {
namespace {

template <class V, Element E>
class FastBackward {
    using F = typename V::F;
    static constexpr int kLanes = V::kLanes;
    static constexpr int kVectors = 2;                // per register tile row
    static constexpr int kWidth = kVectors * kLanes;  // columns per register tile
    static constexpr int kRows = V::kTileRows;        // rows per register tile
    static constexpr bool kFp32 = E == Element::f32;
    using Stored = typename std::conditional<kFp32, float, uint16_t>::type;

public:
    FastBackward(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardScratch& w)
        : p_(p), h_(h), w_(w), dims_(p.head_dim), ld_(p.padded_dims), kb_(p.key_block), qb_(p.query_block) {}

    void run(const FastBackwardPart& part) {
        load_rows(part.first_head, part.end_head, part.first_row, part.end_row);
        const int64_t end_key = min_of(h_.len_k, part.end_key);
        for (int64_t first_key = part.first_key; first_key < end_key; first_key += kb_) run_key_block(part, first_key);
        if (part.dq)
            for (int64_t head = part.first_head; head < part.end_head; ++head)
                for (int64_t i = part.first_row; i < min_of(h_.len_q, part.end_row); ++i)
                    store_row(w_.dq + (head * h_.len_q + i) * ld_,
                              output(h_.dq, head * h_.dq_head_stride + i * h_.dq_row_stride));
    }

private:
    static const Stored* input(const void* base, int64_t offset) { return static_cast<const Stored*>(base) + offset; }
    static Stored* output(void* base, int64_t offset) { return static_cast<Stored*>(base) + offset; }

    static float load_one(Stored x) {
        if constexpr (kFp32) return x;
        else return E == Element::bf16 ? bf16_to_float(x) : fp16_to_float(x);
    }

    // n elements of a row of E → fp32, then zeros up to ld_.
    void convert_row(const Stored* s, float* dst) const {
        int64_t d = 0;
        for (; d + kLanes <= dims_; d += kLanes) {
            if constexpr (kFp32) V::store(dst + d, V::load(s + d));
            else V::store(dst + d, E == Element::bf16 ? V::from_bf16(s + d) : V::from_fp16(s + d));
        }
        for (; d < dims_; ++d) dst[d] = load_one(s[d]);
        for (; d < ld_; ++d) dst[d] = 0.0f;
    }

    void store_row(const float* src, Stored* dst) const {
        for (int64_t d = 0; d < dims_; ++d) {
            if constexpr (kFp32) dst[d] = src[d];
            else dst[d] = E == Element::bf16 ? float_to_bf16(src[d]) : float_to_fp16(src[d]);
        }
    }

    // Q, dO, LSE and D = Σ_d dO·O (in fp64, rounded once) of rows [first_row, end_row) of query heads
    // [first_head, end_head) of the group; dQ's sums start at zero. Q and dO both by rows and in panels of kWidth
    // dims (fast_backward.h).
    void load_rows(int64_t first_head, int64_t end_head, int64_t first_row, int64_t end_row) {
        const int64_t panel_rows = h_.group * h_.len_q;
        for (int64_t head = first_head; head < end_head; ++head)
            for (int64_t i = max_of(0, first_row); i < min_of(h_.len_q, end_row); ++i) {
                const int64_t r = head * h_.len_q + i;
                convert_row(input(h_.q, head * h_.q_head_stride + i * h_.q_row_stride), w_.queries + r * ld_);
                copy_to_panels(w_.queries + r * ld_, w_.query_panels + r * kWidth, panel_rows * kWidth);
                const Stored* dout = input(h_.dout, head * h_.dout_head_stride + i * h_.dout_row_stride);
                convert_row(dout, w_.douts + r * ld_);
                copy_to_panels(w_.douts + r * ld_, w_.dout_panels + r * kWidth, panel_rows * kWidth);
                const Stored* o = input(h_.o, head * h_.o_head_stride + i * h_.o_row_stride);
                double d = 0.0;
                for (int64_t c = 0; c < dims_; ++c) d += double(load_one(dout[c])) * double(load_one(o[c]));
                w_.row_terms[r] = float(d);
                w_.lse[r] = h_.lse[head * h_.lse_head_stride + i];
                for (int64_t c = 0; c < ld_; ++c) w_.dq[r * ld_ + c] = 0.0f;
            }
    }

    // A row of ld_ floats → kWidth floats into each panel, panels `panel_stride` floats apart.
    void copy_to_panels(const float* row, float* panel, int64_t panel_stride) const {
        for (int64_t c = 0; c < ld_; c += kWidth, panel += panel_stride)
            for (int64_t e = 0; e < kWidth; e += kLanes) V::store(panel + e, V::load(row + c + e));
    }

    // C[r][0..kWidth) (+)= Σ_{t < depth} A(r, t)·B[t][0..kWidth) for ROWS rows, A(r, t) = a[r·a_row + t·a_depth].
    template <int ROWS>
    static void gemm_tile(const float* a, int64_t a_row, int64_t a_depth, const float* b, int64_t ldb, int64_t depth,
                          float* c, int64_t ldc, bool accumulate) {
        F acc[ROWS][kVectors];
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < kVectors; ++v) acc[r][v] = accumulate ? V::load(c + r * ldc + v * kLanes) : V::zero();
        for (int64_t t = 0; t < depth; ++t) {
            F bt[kVectors];
#pragma GCC unroll 4
            for (int v = 0; v < kVectors; ++v) bt[v] = V::load(b + t * ldb + v * kLanes);
            const float* at_t = a + t * a_depth;
#pragma GCC unroll 16
            for (int r = 0; r < ROWS; ++r) {
                const F a_rt = V::set1(at_t[r * a_row]);
#pragma GCC unroll 4
                for (int v = 0; v < kVectors; ++v) acc[r][v] = V::fma(a_rt, bt[v], acc[r][v]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < kVectors; ++v) V::store(c + r * ldc + v * kLanes, acc[r][v]);
    }

    // The last rows of a gemm, fewer than kRows.
    template <int ROWS>
    static void gemm_tail(int64_t rows, const float* a, int64_t a_row, int64_t a_depth, const float* b, int64_t ldb,
                          int64_t depth, float* c, int64_t ldc, bool accumulate) {
        if constexpr (ROWS > 0) {
            if (rows == ROWS) return gemm_tile<ROWS>(a, a_row, a_depth, b, ldb, depth, c, ldc, accumulate);
            gemm_tail<ROWS - 1>(rows, a, a_row, a_depth, b, ldb, depth, c, ldc, accumulate);
        }
    }

    // C[rows][cols] (+)= A·B, A(r, t) = a[r·a_row + t·a_depth]; B in panels of kWidth columns, panel p at
    // b + p·b_panel with rows ldb apart (by rows: b_panel = kWidth); cols a multiple of kWidth.
    static void gemm(int64_t rows, int64_t cols, int64_t depth, const float* a, int64_t a_row, int64_t a_depth,
                     const float* b, int64_t ldb, int64_t b_panel, float* c, int64_t ldc, bool accumulate) {
        for (int64_t col = 0; col < cols; col += kWidth) {
            const float* b_col = b + col / kWidth * b_panel;
            int64_t r = 0;
            for (; r + kRows <= rows; r += kRows)
                gemm_tile<kRows>(a + r * a_row, a_row, a_depth, b_col, ldb, depth, c + r * ldc + col, ldc, accumulate);
            if (r < rows)
                gemm_tail<kRows - 1>(rows - r, a + r * a_row, a_row, a_depth, b_col, ldb, depth, c + r * ldc + col,
                                     ldc, accumulate);
        }
    }

    // K and V of keys [first_key, first_key + keys) in panels (fast_backward.h), keys past the block's end zero;
    // dK and dV start at zero.
    void load_keys(int64_t first_key, int64_t keys) {
        float* k_row = w_.dk;  // scratch rows before dK's and dV's sums start
        float* v_row = w_.dv;
        for (int64_t j = 0; j < kb_; ++j) {
            if (j < keys) {
                convert_row(input(h_.k, (first_key + j) * h_.k_row_stride), k_row);
                convert_row(input(h_.v, (first_key + j) * h_.v_row_stride), v_row);
            } else {
                for (int64_t d = 0; d < ld_; ++d) k_row[d] = 0.0f, v_row[d] = 0.0f;
            }
            copy_to_panels(k_row, w_.keys + j * kWidth, kb_ * kWidth);
            float* k_t = w_.keys_t + (j / kWidth) * ld_ * kWidth + j % kWidth;
            float* v_t = w_.values_t + (j / kWidth) * ld_ * kWidth + j % kWidth;
            for (int64_t d = 0; d < ld_; ++d) k_t[d * kWidth] = k_row[d], v_t[d * kWidth] = v_row[d];
        }
        for (int64_t e = 0; e < kb_ * ld_; ++e) w_.dk[e] = 0.0f, w_.dv[e] = 0.0f;
    }

    // The key block at first_key against the part's rows and query heads.
    void run_key_block(const FastBackwardPart& part, int64_t first_key) {
        const int64_t keys = min_of(kb_, h_.len_k - first_key);
        // Rows i that see a key of the block: i + band_first <= last key and i + band_last >= first key.
        const int64_t first_row = max_of(part.first_row, first_key - h_.band_last);
        const int64_t end_row = min_of(min_of(h_.len_q, part.end_row), first_key + keys - h_.band_first);
        if (!part.dkv && first_row >= end_row) return;
        load_keys(first_key, keys);
        if (first_row < end_row)
            for (int64_t head = part.first_head; head < part.end_head; ++head)
                for (int64_t row = first_row; row < end_row; row += qb_)
                    run_query_block(part, head, row, min_of(qb_, end_row - row), first_key, keys);
        // Every key of the block, 0 where no row saw it: rounded into dK and dV, or in fp32 into the part's sums.
        if (part.dkv)
            for (int64_t j = 0; j < keys; ++j) {
                const float* dk_row = w_.dk + j * ld_;
                const float* dv_row = w_.dv + j * ld_;
                if (part.dk_sums) {
                    for (int64_t d = 0; d < ld_; d += kLanes) {
                        V::store(part.dk_sums + (first_key + j) * ld_ + d, V::load(dk_row + d));
                        V::store(part.dv_sums + (first_key + j) * ld_ + d, V::load(dv_row + d));
                    }
                } else {
                    store_row(dk_row, output(h_.dk, (first_key + j) * h_.dk_row_stride));
                    store_row(dv_row, output(h_.dv, (first_key + j) * h_.dv_row_stride));
                }
            }
    }

    void run_query_block(const FastBackwardPart& part, int64_t head, int64_t first_row, int64_t rows, int64_t first_key,
                         int64_t keys) {
        const int64_t r0 = head * h_.len_q + first_row;
        const float* q = w_.queries + r0 * ld_;
        const float* dout = w_.douts + r0 * ld_;
        const int64_t row_panel = h_.group * h_.len_q * kWidth;
        // S = Q·Kᵀ, dP = dO·Vᵀ
        gemm(rows, kb_, dims_, q, ld_, 1, w_.keys_t, kWidth, ld_ * kWidth, w_.probs, kb_, false);
        gemm(rows, kb_, dims_, dout, ld_, 1, w_.values_t, kWidth, ld_ * kWidth, w_.grads, kb_, false);
        for (int64_t r = 0; r < rows; ++r) score_gradients(head, r0 + r, first_row + r, first_key, keys, r);
        // dV += Pᵀ·dO, dK += (scale·dS)ᵀ·Q, dQ += (scale·dS)·K
        if (part.dkv) {
            gemm(keys, ld_, rows, w_.probs, 1, kb_, w_.dout_panels + r0 * kWidth, kWidth, row_panel, w_.dv, ld_, true);
            gemm(keys, ld_, rows, w_.grads, 1, kb_, w_.query_panels + r0 * kWidth, kWidth, row_panel, w_.dk, ld_, true);
        }
        if (part.dq)
            gemm(rows, ld_, keys, w_.grads, kb_, 1, w_.keys, kWidth, kb_ * kWidth, w_.dq + r0 * ld_, ld_, true);
    }

    // Row r of the block (buffer row `buffer_row`, sequence row `row`): S → P and dP → scale·dS over the keys it
    // sees, zeros elsewhere.
    void score_gradients(int64_t head, int64_t buffer_row, int64_t row, int64_t first_key, int64_t keys, int64_t r) {
        float* s = w_.probs + r * kb_;
        float* dp = w_.grads + r * kb_;
        const int64_t begin = clamp_to(row + h_.band_first - first_key, 0, keys);
        const int64_t end = clamp_to(row + h_.band_last + 1 - first_key, begin, keys);
        const float lse = w_.lse[buffer_row], d = w_.row_terms[buffer_row], scale = p_.scale;
        const float slope = h_.alibi_slopes ? h_.alibi_slopes[head] : 0.0f;
        if (p_.softcap > 0.0f || slope != 0.0f) {
            for (int64_t j = begin; j < end; ++j) {
                // s = softcap·tanh(x / softcap) - slope·|i + offset - j|, x = scale·q·k; ds/dx = 1 - tanh².
                float score = scale * s[j], slope_of_cap = 1.0f;
                if (p_.softcap > 0.0f) {
                    const float t = __builtin_tanhf(score / p_.softcap);
                    score = p_.softcap * t;
                    slope_of_cap = 1.0f - t * t;
                }
                score -= slope * float(abs_of(row + h_.alibi_offset - (first_key + j)));
                const float probability = __builtin_expf(score - lse);
                s[j] = probability;
                dp[j] = scale * probability * (dp[j] - d) * slope_of_cap;
            }
        } else {
            const F scale_v = V::set1(scale), lse_v = V::set1(lse), d_v = V::set1(d);
            int64_t j = begin;
            for (; j + kLanes <= end; j += kLanes) {
                const F probability = V::exp(V::sub(V::mul(scale_v, V::load(s + j)), lse_v));  // P = exp(scale·S - LSE)
                V::store(s + j, probability);
                V::store(dp + j, V::mul(scale_v, V::mul(probability, V::sub(V::load(dp + j), d_v))));  // scale·dS
            }
            for (; j < end; ++j) {
                const float probability = __builtin_expf(scale * s[j] - lse);
                s[j] = probability;
                dp[j] = scale * probability * (dp[j] - d);
            }
        }
        for (int64_t j = 0; j < begin; ++j) s[j] = 0.0f, dp[j] = 0.0f;
        for (int64_t j = end; j < kb_; ++j) s[j] = 0.0f, dp[j] = 0.0f;
    }

    const FastBackwardProblem& p_;
    const FastBackwardHead& h_;
    const FastBackwardScratch& w_;
    const int64_t dims_, ld_, kb_, qb_;
};

// One work item on vector type V.
template <class V>
void run_fast_backward(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                       const FastBackwardScratch& w) {
    switch (p.element) {
        case Element::f16: return FastBackward<V, Element::f16>(p, h, w).run(part);
        case Element::bf16: return FastBackward<V, Element::bf16>(p, h, w).run(part);
        case Element::f32: return FastBackward<V, Element::f32>(p, h, w).run(part);
    }
}

}  // namespace
}  // namespace flashsci::cpu
