// The general kernel: one CTA per (query tile, head, batch) walks the key tiles with the online softmax.
// Tiles are staged in shared memory as fp32 and multiplied with fp32 FMAs, so every element type,
// head_dim, stride and alignment runs, with O(seqlen) memory and no TF32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/device.cuh"
#include "general/general.cuh"

namespace flashsci::kernels::general {

// ---- tile table ---------------------------------------------------------------------------------------------
// kLanesPerRow lanes of one warp share a query row: they split its keys in S and its head_dim columns in O,
// and reduce its max and sum with shuffles. kRowGroups such groups make a CTA.
constexpr int kLanesPerRow = 16;
constexpr int kRowGroups = 8;
constexpr int kThreads = kLanesPerRow * kRowGroups;
static_assert(kWarpSize % kLanesPerRow == 0, "a row's lanes (and the P it stages) must stay within one warp");
static_assert(kThreads % kWarpSize == 0, "full warps: the shuffles name every lane");

// 96 KiB: under the opt-in shared memory of every sm_80+ part (99 KiB on sm_86/sm_89), so sm_80 code runs there too.
constexpr size_t kSharedBudget = 96 * 1024;

// Query rows and keys per tile, one row per head-dim bucket.
struct TileShape {
    int head_dim, rows, keys;
};
constexpr TileShape kTileShapes[] = {
    {64, 64, 64},
    {128, 64, 32},
    {256, 32, 16},
};
constexpr TileShape tile_shape(int head_dim) {
    for (const TileShape& shape : kTileShapes)
        if (shape.head_dim == head_dim) return shape;
    return {head_dim, 0, 0};
}

template <int kHeadDim>
struct Tile {
    static constexpr int rows = tile_shape(kHeadDim).rows;
    static constexpr int keys = tile_shape(kHeadDim).keys;
    static constexpr int rows_per_thread = rows / kRowGroups;        // a thread's rows: contiguous
    static constexpr int keys_per_thread = keys / kLanesPerRow;      // a thread's keys: lane + j·kLanesPerRow
    static constexpr int cols_per_thread = kHeadDim / kLanesPerRow;  // a thread's O columns: lane + c·kLanesPerRow
    // Row pitches in floats. The +1 pads keep the 16 lanes reading 16 K rows (and two row groups reading
    // Q and P rows) at one column on distinct banks; V and O are read along columns and need none.
    static constexpr int q_pitch = kHeadDim + 1;
    static constexpr int k_pitch = kHeadDim + 1;
    static constexpr int v_pitch = kHeadDim;
    static constexpr int p_pitch = keys + 1;
    static constexpr int q_offset = 0;
    static constexpr int k_offset = q_offset + rows * q_pitch;
    static constexpr int v_offset = k_offset + keys * k_pitch;
    static constexpr int p_offset = v_offset + keys * v_pitch;
    static constexpr size_t shared_bytes = size_t(p_offset + rows * p_pitch) * sizeof(float);

    static_assert(rows > 0 && keys > 0, "kTileShapes has no row for this bucket");
    static_assert(rows % kRowGroups == 0 && keys % kLanesPerRow == 0 && kHeadDim % kLanesPerRow == 0);
    static_assert(kHeadDim % kHeadDimStep == 0);
    static_assert(rows * kHeadDim % kThreads == 0 && keys * kHeadDim % kThreads == 0, "tile loads split evenly");
    static_assert(shared_bytes <= kSharedBudget);
};

constexpr int kLoadsInFlight = 4;  // global loads a thread keeps in flight while staging a tile; more costs registers
// ---- helpers --------------------------------------------------------------------------------------------------
// max / sum over the kLanesPerRow lanes that share a row
__device__ __forceinline__ float row_max(float x) {
#pragma unroll
    for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(kFullWarp, x, offset));
    return x;
}
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
    for (int offset = kLanesPerRow / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(kFullWarp, x, offset);
    return x;
}

// tile[r][d] = src[(first + r)·row_stride + d] in fp32; 0 for rows past `rows` and columns past head_dim
template <typename T, int kRows, int kHeadDim, int kPitch>
__device__ __forceinline__ void load_tile(float* tile, const T* src, int64_t row_stride, int64_t first, int64_t rows,
                                          int head_dim) {
    constexpr int kPerThread = kRows * kHeadDim / kThreads;
#pragma unroll(kLoadsInFlight)
    for (int it = 0; it < kPerThread; ++it) {
        const int e = it * kThreads + int(threadIdx.x);
        const int r = e / kHeadDim, d = e % kHeadDim;
        const int64_t row = first + r;
        tile[r * kPitch + d] = row < rows && d < head_dim ? to_float(src[row * row_stride + d]) : 0.0f;
    }
}

// O += P·V over one key tile for a thread's RM rows and RD columns. kGuarded: only keys first[i] <= n <= last[i]
// reach row i, for tiles that cross an edge of the key band, where a masked key's P = 0 would still turn a
// non-finite V into NaN.
template <bool kGuarded, int kKeys, int kPPitch, int kVPitch, int RM, int RD>
__device__ __forceinline__ void accumulate_pv(float (&acc)[RM][RD], const float* sP, const float* sV, int row0,
                                              int lane, const int (&first)[RM], const int (&last)[RM]) {
#pragma unroll
    for (int n = 0; n < kKeys; ++n) {
        float pv[RM], vv[RD];
#pragma unroll
        for (int i = 0; i < RM; ++i) pv[i] = sP[(row0 + i) * kPPitch + n];
#pragma unroll
        for (int c = 0; c < RD; ++c) vv[c] = sV[n * kVPitch + lane + c * kLanesPerRow];
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
            for (int c = 0; c < RD; ++c)
                acc[i][c] = !kGuarded || (n >= first[i] && n <= last[i]) ? fmaf(pv[i], vv[c], acc[i][c]) : acc[i][c];
    }
}

// ---- the kernel -----------------------------------------------------------------------------------------------
// Work item w → (query tile, head, sequence b); row i of sequence b sees key j iff i + band.first <= j <=
// i + band.last and 0 <= j < len_k, with b's lengths and band (one length for all in a dense batch; a
// variable-length batch tiles its longest sequence, and tiles past a shorter one's end exit). Key tiles wholly
// outside the band are skipped; only tiles crossing its edges are masked.
// redo: null, or flags (general.h: launch_redo): [0] whether any pair runs, [1 + b·heads_kv + g] whether sequence b's
// kv head g does.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) forward_kernel(const Problem p, const int* redo) {
    using Cfg = Tile<kHeadDim>;
    constexpr int RM = Cfg::rows_per_thread, RN = Cfg::keys_per_thread, RD = Cfg::cols_per_thread;
    extern __shared__ float shared[];
    float* const sQ = shared + Cfg::q_offset;  // [rows][q_pitch]
    float* const sK = shared + Cfg::k_offset;  // [keys][k_pitch]
    float* const sV = shared + Cfg::v_offset;  // [keys][v_pitch]
    float* const sP = shared + Cfg::p_offset;  // [rows][p_pitch], each row group's rows written and read by its warp

    const int lane = int(threadIdx.x) % kLanesPerRow;
    const int row0 = int(threadIdx.x) / kLanesPerRow * RM;  // this thread's first row in the tile
    const int head_dim = int(p.head_dim);
    // Scores s are raw q·k, or with a softcap or ALiBi the final logits: exp(score_scale·s) = exp2(scale_log2·s).
    const bool transform = has_score_transform(p);
    const ScoreScales scales = score_scales(p);
    const float score_scale = scales.score_scale, scale_log2 = scales.scale_log2, cap_scale = scales.cap_scale;
    const int64_t q_tiles = (p.seqlen_q + Cfg::rows - 1) / Cfg::rows;
    const int64_t work = q_tiles * p.heads_q * p.batch;
    const int64_t group = p.heads_q / p.heads_kv;
    if (redo != nullptr && redo[0] == 0) return;  // a redo with nothing flagged

    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
        const int64_t q_tile = q_tiles - 1 - w % q_tiles;  // a head's last (longest causal) tile first
        const int64_t h = w / q_tiles % p.heads_q;
        const int64_t b = w / q_tiles / p.heads_q;
        if (redo != nullptr && redo[1 + b * p.heads_kv + h / group] == 0) continue;  // the whole CTA moves on
        const int64_t q0 = q_tile * Cfg::rows;
        const Sequence seq = sequence(p, b);  // varlen offsets clamped into the packed tensors
        if (q0 >= seq.len_q) continue;        // past this sequence's end: the whole CTA moves on
        const KeyBand band = key_band(p, seq.len_q, seq.len_k);
        const int64_t alibi = alibi_offset(seq.len_q, seq.len_k);
        const int64_t last_row = min(q0 + Cfg::rows, seq.len_q) - 1;
        const int64_t first_key = max(int64_t{0}, q0 + band.first);
        const int64_t last_key = min(seq.len_k - 1, last_row + band.last);
        // from the first to the last tile any row of this query tile sees
        const int64_t first_tile = first_key / Cfg::keys;
        const int64_t end_tile = last_key < first_key ? first_tile : last_key / Cfg::keys + 1;
        const float slope = p.alibi_slopes != nullptr ? p.alibi_slopes[h] : 0.0f;

        // the sequence's row 0 (a varlen batch has batch stride 0 and locates it by its first row)
        const T* const q = static_cast<const T*>(p.q) + b * p.q_strides.batch + seq.q_start * p.q_strides.seq +
                           h * p.q_strides.head;
        const T* const k = static_cast<const T*>(p.k) + b * p.k_strides.batch + seq.k_start * p.k_strides.seq +
                           h / group * p.k_strides.head;
        const T* const v = static_cast<const T*>(p.v) + b * p.v_strides.batch + seq.k_start * p.v_strides.seq +
                           h / group * p.v_strides.head;
        T* const o = static_cast<T*>(p.o) + b * p.o_strides.batch + seq.q_start * p.o_strides.seq +
                     h * p.o_strides.head;

        __syncthreads();  // the previous work item is done with sQ
        load_tile<T, Cfg::rows, kHeadDim, Cfg::q_pitch>(sQ, q, p.q_strides.seq, q0, seq.len_q, head_dim);

        float acc[RM][RD] = {};  // O·l, unnormalised
        float m[RM];             // running max of the scores s
        float l[RM] = {};        // running Σ exp(score_scale·(s − m)) over this thread's keys
#pragma unroll
        for (int i = 0; i < RM; ++i) m[i] = -INFINITY;

        for (int64_t kt = first_tile; kt < end_tile; ++kt) {
            const int64_t k0 = kt * Cfg::keys;
            __syncthreads();  // everyone is done with the previous K, V (and sQ is written)
            load_tile<T, Cfg::keys, kHeadDim, Cfg::k_pitch>(sK, k, p.k_strides.seq, k0, seq.len_k, head_dim);
            load_tile<T, Cfg::keys, kHeadDim, Cfg::v_pitch>(sV, v, p.v_strides.seq, k0, seq.len_k, head_dim);
            __syncthreads();

            // S = Q·Kᵀ
            float s[RM][RN] = {};
            for (int d0 = 0; d0 < head_dim; d0 += kHeadDimStep) {
#pragma unroll
                for (int dd = 0; dd < kHeadDimStep; ++dd) {
                    float qv[RM], kv[RN];
#pragma unroll
                    for (int i = 0; i < RM; ++i) qv[i] = sQ[(row0 + i) * Cfg::q_pitch + d0 + dd];
#pragma unroll
                    for (int j = 0; j < RN; ++j) kv[j] = sK[(lane + j * kLanesPerRow) * Cfg::k_pitch + d0 + dd];
#pragma unroll
                    for (int i = 0; i < RM; ++i)
#pragma unroll
                        for (int j = 0; j < RN; ++j) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
                }
            }

            int first[RM], last[RM];  // each row's visible keys in this tile (tile-relative, clamped to the tile)
#pragma unroll
            for (int i = 0; i < RM; ++i) {
                const int64_t row = q0 + row0 + i;
                // s = softcap·tanh(scale·s / softcap) (or scale·s); s −= slope·|i + len_k − len_q − j|
                if (transform) {
#pragma unroll
                    for (int j = 0; j < RN; ++j) {
                        const float scaled = p.softcap > 0.0f ? p.softcap * tanhf(s[i][j] * cap_scale)
                                                              : s[i][j] * p.scale;
                        const int64_t key = k0 + lane + j * kLanesPerRow;
                        s[i][j] = fmaf(-slope, float(llabs(row + alibi - key)), scaled);
                    }
                }
                // S = −inf outside the row's visible keys (tile-relative)
                const int64_t upper = min(seq.len_k - 1, row + band.last) - k0;
                const int64_t lower = row + band.first - k0;
                last[i] = int(max(int64_t{-1}, min(upper, int64_t{Cfg::keys})));
                first[i] = int(min(int64_t{Cfg::keys}, max(lower, int64_t{0})));
#pragma unroll
                for (int j = 0; j < RN; ++j)
                    if (lane + j * kLanesPerRow > upper || lane + j * kLanesPerRow < lower) s[i][j] = -INFINITY;

                // m_new = max(m_old, rowmax(S)); a row with no visible key yet keeps base 0, so P = 0, not NaN
                float tile_max = s[i][0];
#pragma unroll
                for (int j = 1; j < RN; ++j) tile_max = fmaxf(tile_max, s[i][j]);
                const float m_new = fmaxf(m[i], row_max(tile_max));
                const float base = (m_new == -INFINITY ? 0.0f : m_new) * scale_log2;
                // alpha = exp(score_scale·(m_old − m_new))
                const float alpha = exp2f(fmaf(m[i], scale_log2, -base));
                m[i] = m_new;

                // P = exp(score_scale·(S − m_new)); l = l·alpha + rowsum(P)
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < RN; ++j) {
                    s[i][j] = exp2f(fmaf(s[i][j], scale_log2, -base));
                    sum += s[i][j];
                    sP[(row0 + i) * Cfg::p_pitch + lane + j * kLanesPerRow] = s[i][j];
                }
                l[i] = fmaf(l[i], alpha, sum);
#pragma unroll
                for (int c = 0; c < RD; ++c) acc[i][c] *= alpha;
            }
            __syncwarp();  // this row group's P is in sP

            // O += P·V  (O was rescaled by alpha with the softmax). Keys past len_k were staged as 0; a tile
            // every row of the CTA sees whole needs no guard.
            if (min(k0 + Cfg::keys, seq.len_k) - 1 <= q0 + band.last && k0 >= last_row + band.first)
                accumulate_pv<false, Cfg::keys, Cfg::p_pitch, Cfg::v_pitch>(acc, sP, sV, row0, lane, first, last);
            else
                accumulate_pv<true, Cfg::keys, Cfg::p_pitch, Cfg::v_pitch>(acc, sP, sV, row0, lane, first, last);
        }

        // O = acc / l; LSE = score_scale·m + log(l). A row that saw no key: l = 0, O = 0, LSE = −inf. A row that saw a
        // NaN score: l = NaN, so O and LSE are NaN.
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const float l_row = row_sum(l[i]);
            const bool saw_keys = l_row != 0.0f;
            const int64_t row = q0 + row0 + i;
            if (row >= seq.len_q) continue;
#pragma unroll
            for (int c = 0; c < RD; ++c) {
                const int col = lane + c * kLanesPerRow;
                if (col < head_dim)
                    o[row * p.o_strides.seq + col] = from_float<T>(saw_keys ? acc[i][c] / l_row : 0.0f);
            }
            if (lane == 0 && p.lse != nullptr)
                p.lse[lse_index(p, seq, b, h, row)] =
                    saw_keys ? fmaf(score_scale, m[i], logf(l_row)) : -INFINITY;
        }
    }
}

template <typename T, int kHeadDim>
cudaError_t launch_bucket(const Problem& p, const int* redo, int64_t max_ctas, cudaStream_t stream) {
    constexpr size_t kShared = Tile<kHeadDim>::shared_bytes;
    const cudaError_t attribute =
        cudaFuncSetAttribute(forward_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kShared));
    if (attribute != cudaSuccess) return attribute;
    const int64_t work = (p.seqlen_q + Tile<kHeadDim>::rows - 1) / Tile<kHeadDim>::rows * p.heads_q * p.batch;
    const unsigned grid = unsigned(std::min({work, max_ctas, kMaxGridX}));
    forward_kernel<T, kHeadDim><<<grid, kThreads, kShared, stream>>>(p, redo);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::general
