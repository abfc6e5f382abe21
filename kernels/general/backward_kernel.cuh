// The general backward, FlashAttention-2's algorithm with tiles staged in shared memory as fp32 and multiplied with
// fp32 FMAs (every element type, head_dim, stride and alignment runs):
//   1. a pre-pass computes D = rowsum(dO∘O) per query row and head and zeroes the fp32 dQ accumulator;
//   2. one CTA per (key-block split, kv head, sequence) keeps K and V of a key block, walks the query heads of its
//      GQA group and their query blocks inside the key band, recomputes P from the forward's LSE, accumulates dK
//      and dV in registers (one writer per key: no atomics) and adds dQ into the accumulator;
//   3. a last pass sums the accumulator's slices in index order and writes dQ in the element type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/device.cuh"
#include "general/backward_schedule.h"
#include "general/general.cuh"

namespace flashsci::kernels::general {
namespace backward {

// ---- tile table ---------------------------------------------------------------------------------------------
// kLanes lanes of one warp share a query row in S = Q·Kᵀ, dP = dO·Vᵀ and dQ (splitting its keys, then its
// columns), or a key row in dK and dV (splitting its columns). kGroups such groups make a CTA.
constexpr int kLanes = 16;
constexpr int kGroups = 8;
constexpr int kThreads = kLanes * kGroups;
static_assert(kWarpSize % kLanes == 0, "a group's lanes stay within one warp");
static_assert(kThreads % kWarpSize == 0);

// 96 KiB: under the opt-in shared memory of every sm_80+ part (99 KiB on sm_86/sm_89).
constexpr size_t kSharedBudget = 96 * 1024;

// The row passes (D, zeroing, dQ's conversion): one warp per (query row, head), this many warps per CTA, at most
// kRowPassCtasPerSm CTAs per SM (they loop over the rest).
constexpr int kRowPassWarps = 8;
constexpr int kRowPassThreads = kRowPassWarps * kWarpSize;
constexpr int64_t kRowPassCtasPerSm = 8;

// dQ columns a thread accumulates per pass over a tile's keys (fewer live registers than all of its columns).
constexpr int kDqColumnsPerPass = 4;

template <int kHeadDim>
struct Tile {
    static constexpr int rows = backward_tile_shape(kHeadDim).rows;
    static constexpr int keys = backward_tile_shape(kHeadDim).keys;
    static constexpr int rows_per_thread = rows / kGroups;        // S, dP, dQ: a group's rows, contiguous
    static constexpr int keys_per_lane = keys / kLanes;           // S, dP: a lane's keys lane + j·kLanes
    static constexpr int keys_per_thread = keys / kGroups;        // dK, dV: a group's keys, contiguous
    static constexpr int cols_per_thread = kHeadDim / kLanes;     // dK, dV, dQ: a lane's columns lane + c·kLanes
    // Row pitches in floats; the +1 pads put the 16 lanes reading 16 K (V) rows at one column, and two groups
    // reading Q (dO, P, dS) rows, on distinct banks.
    static constexpr int pitch = kHeadDim + 1;  // Q, dO, K, V
    static constexpr int p_pitch = keys + 1;    // P, dS
    static constexpr int q_offset = 0;
    static constexpr int do_offset = q_offset + rows * pitch;
    static constexpr int k_offset = do_offset + rows * pitch;
    static constexpr int v_offset = k_offset + keys * pitch;
    static constexpr int p_offset = v_offset + keys * pitch;
    static constexpr int ds_offset = p_offset + rows * p_pitch;
    static constexpr size_t shared_bytes = size_t(ds_offset + rows * p_pitch) * sizeof(float);

    static_assert(rows > 0 && keys > 0, "kBackwardTileShapes has no row for this bucket");
    static_assert(rows % kGroups == 0 && keys % kLanes == 0 && keys % kGroups == 0 && kHeadDim % kLanes == 0);
    static_assert(cols_per_thread % kDqColumnsPerPass == 0);
    static_assert(kHeadDim % kHeadDimStep == 0);
    static_assert(rows * kHeadDim % kThreads == 0 && keys * kHeadDim % kThreads == 0, "tile loads split evenly");
    static_assert(shared_bytes <= kSharedBudget);
};

constexpr int kLoadsInFlight = 4;  // global loads a thread keeps in flight while staging a tile

// ---- helpers --------------------------------------------------------------------------------------------------
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

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(kFullWarp, x, offset);
    return x;
}

// dV += Pᵀ·dO and dK += dSᵀ·Q over the tile's first `tile_rows` rows, for a thread's KT keys (key0 + t) and RD
// columns. kGuarded: only rows first[t] <= m <= last[t] reach key t, for tiles crossing an edge of the key band,
// where a masked entry's P = dS = 0 would still turn a non-finite dO or Q into NaN.
template <bool kGuarded, int kPitch, int kPPitch, int KT, int RD>
__device__ __forceinline__ void accumulate_dkv(float (&dk)[KT][RD], float (&dv)[KT][RD], const float* sP,
                                               const float* sdS, const float* sdO, const float* sQ, int tile_rows,
                                               int key0, int lane, const int (&first)[KT], const int (&last)[KT]) {
#pragma unroll 1
    for (int m = 0; m < tile_rows; ++m) {
        float pv[KT], dsv[KT], ov[RD], qv[RD];
#pragma unroll
        for (int t = 0; t < KT; ++t) {
            pv[t] = sP[m * kPPitch + key0 + t];
            dsv[t] = sdS[m * kPPitch + key0 + t];
        }
#pragma unroll
        for (int c = 0; c < RD; ++c) {
            ov[c] = sdO[m * kPitch + lane + c * kLanes];
            qv[c] = sQ[m * kPitch + lane + c * kLanes];
        }
#pragma unroll
        for (int t = 0; t < KT; ++t) {
            const bool seen = !kGuarded || (m >= first[t] && m <= last[t]);
#pragma unroll
            for (int c = 0; c < RD; ++c) {
                dv[t][c] = seen ? fmaf(pv[t], ov[c], dv[t][c]) : dv[t][c];
                dk[t][c] = seen ? fmaf(dsv[t], qv[c], dk[t][c]) : dk[t][c];
            }
        }
    }
}

// acc = dS·K over the tile's keys for a thread's RM rows and kDqColumnsPerPass columns lane + (c0 + c)·kLanes.
// kGuarded: only keys first[i] <= n <= last[i] reach row i (a masked key's K may be non-finite).
template <bool kGuarded, int kKeys, int kPitch, int kPPitch, int RM>
__device__ __forceinline__ void accumulate_dq(float (&acc)[RM][kDqColumnsPerPass], const float* sdS, const float* sK,
                                              int row0, int lane, int c0, const int (&first)[RM],
                                              const int (&last)[RM]) {
#pragma unroll 2
    for (int n = 0; n < kKeys; ++n) {
        float dsv[RM], kv[kDqColumnsPerPass];
#pragma unroll
        for (int i = 0; i < RM; ++i) dsv[i] = sdS[(row0 + i) * kPPitch + n];
#pragma unroll
        for (int c = 0; c < kDqColumnsPerPass; ++c) kv[c] = sK[n * kPitch + lane + (c0 + c) * kLanes];
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const bool seen = !kGuarded || (n >= first[i] && n <= last[i]);
#pragma unroll
            for (int c = 0; c < kDqColumnsPerPass; ++c) acc[i][c] = seen ? fmaf(dsv[i], kv[c], acc[i][c]) : acc[i][c];
        }
    }
}

// ---- the row passes ---------------------------------------------------------------------------------------------
// Work item w (one warp) → (sequence b, row i, query head h), heads fastest; rows past a sequence's end are skipped.
struct RowItem {
    int64_t b, i, h;
};
__device__ __forceinline__ RowItem row_item(const Problem& p, int64_t w) {
    return {w / p.heads_q / p.seqlen_q, w / p.heads_q % p.seqlen_q, w % p.heads_q};
}

// D = rowsum(dO∘O) (laid out like the LSE), and every slice of the dQ accumulator zeroed.
template <typename T>
__global__ void __launch_bounds__(kRowPassThreads) prepare_kernel(const Problem p, const Gradients g,
                                                                  const BackwardSchedule s, float* row_dot,
                                                                  float* dq_accum) {
    const int lane = int(threadIdx.x) % kWarpSize;
    const int64_t warps = int64_t(gridDim.x) * kRowPassWarps;
    const int64_t items = p.batch * p.seqlen_q * p.heads_q;
    for (int64_t w = int64_t(blockIdx.x) * kRowPassWarps + int(threadIdx.x) / kWarpSize; w < items; w += warps) {
        const RowItem r = row_item(p, w);
        const Sequence seq = sequence(p, r.b);
        if (r.i >= seq.len_q) continue;  // the whole warp moves on
        const int64_t row = seq.q_start + r.i;
        const T* const o = static_cast<const T*>(p.o) + r.b * p.o_strides.batch + row * p.o_strides.seq +
                           r.h * p.o_strides.head;
        const T* const dout = static_cast<const T*>(g.dout) + r.b * g.dout_strides.batch +
                              row * g.dout_strides.seq + r.h * g.dout_strides.head;
        float dot = 0.0f;
        for (int64_t d = lane; d < p.head_dim; d += kWarpSize) dot = fmaf(to_float(dout[d]), to_float(o[d]), dot);
        dot = warp_sum(dot);
        if (lane == 0) row_dot[lse_index(p, seq, r.b, r.h, r.i)] = dot;
        for (int64_t slice = 0; slice < s.slices; ++slice) {
            float* const acc = dq_accum + dq_accum_index(p, s, seq, slice, r.b, r.h, r.i);
            for (int64_t d = lane; d < p.head_dim; d += kWarpSize) acc[d] = 0.0f;
        }
    }
}

// dQ = Σ over the slices, in index order, of the accumulator, in the element type.
template <typename T>
__global__ void __launch_bounds__(kRowPassThreads) convert_kernel(const Problem p, const Gradients g,
                                                                  const BackwardSchedule s, const float* dq_accum) {
    const int lane = int(threadIdx.x) % kWarpSize;
    const int64_t warps = int64_t(gridDim.x) * kRowPassWarps;
    const int64_t items = p.batch * p.seqlen_q * p.heads_q;
    for (int64_t w = int64_t(blockIdx.x) * kRowPassWarps + int(threadIdx.x) / kWarpSize; w < items; w += warps) {
        const RowItem r = row_item(p, w);
        const Sequence seq = sequence(p, r.b);
        if (r.i >= seq.len_q) continue;
        T* const dq = static_cast<T*>(g.dq) + r.b * g.dq_strides.batch + (seq.q_start + r.i) * g.dq_strides.seq +
                      r.h * g.dq_strides.head;
        const float* const acc = dq_accum + dq_accum_index(p, s, seq, 0, r.b, r.h, r.i);
        const int64_t slice_stride = s.dq_rows * p.heads_q * p.head_dim;
        for (int64_t d = lane; d < p.head_dim; d += kWarpSize) {
            float sum = 0.0f;
            for (int64_t slice = 0; slice < s.slices; ++slice) sum += acc[slice * slice_stride + d];
            dq[d] = from_float<T>(sum);
        }
    }
}

// ---- the main kernel ----------------------------------------------------------------------------------------------
// Work item w → (split, kv head, sequence b); the split walks key blocks split, split + splits, ... of b. Row i of
// sequence b sees key j iff i + band.first <= j <= i + band.last and 0 <= j < len_k. Query blocks wholly outside
// the band are skipped; only tiles crossing its edges are masked. The split adds its dQ into slice `split` of the
// accumulator when deterministic (in a fixed order, by plain read-modify-write: no other CTA touches that slice's
// rows of these heads), else with fp32 atomics into slice 0.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) main_kernel(const Problem p, const Gradients g, const BackwardSchedule s,
                                                        const float* row_dot, float* dq_accum) {
    using Cfg = Tile<kHeadDim>;
    constexpr int RM = Cfg::rows_per_thread, RN = Cfg::keys_per_lane, KT = Cfg::keys_per_thread,
                  RD = Cfg::cols_per_thread;
    extern __shared__ float shared[];
    float* const sQ = shared + Cfg::q_offset;    // [rows][pitch]
    float* const sdO = shared + Cfg::do_offset;  // [rows][pitch]
    float* const sK = shared + Cfg::k_offset;    // [keys][pitch]
    float* const sV = shared + Cfg::v_offset;    // [keys][pitch]
    float* const sP = shared + Cfg::p_offset;    // [rows][p_pitch]
    float* const sdS = shared + Cfg::ds_offset;  // [rows][p_pitch], dL/d(q·k): dS with the scale and tanh' folded in

    const int lane = int(threadIdx.x) % kLanes;
    const int row0 = int(threadIdx.x) / kLanes * RM;  // this thread's first row of S, dP, dQ in the tile
    const int key0 = int(threadIdx.x) / kLanes * KT;  // this thread's first key of dK, dV in the tile
    const int head_dim = int(p.head_dim);
    const bool softcapped = p.softcap > 0.0f;
    const float cap_scale = softcapped ? p.scale / p.softcap : 0.0f;  // tanh's argument is scale·q·k / softcap
    const int64_t group = p.heads_q / p.heads_kv;
    const int64_t work = s.splits * p.heads_kv * p.batch;

    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
        const int64_t split = w % s.splits;
        const int64_t kv_head = w / s.splits % p.heads_kv;
        const int64_t b = w / s.splits / p.heads_kv;
        const int64_t slice = g.deterministic ? split : 0;
        const Sequence seq = sequence(p, b);  // varlen offsets clamped into the packed tensors
        const KeyBand band = key_band(p, seq.len_q, seq.len_k);
        const int64_t alibi = alibi_offset(seq.len_q, seq.len_k);
        // the sequence's row 0 (a varlen batch has batch stride 0 and locates it by its first row)
        const T* const k = static_cast<const T*>(p.k) + b * p.k_strides.batch + seq.k_start * p.k_strides.seq +
                           kv_head * p.k_strides.head;
        const T* const v = static_cast<const T*>(p.v) + b * p.v_strides.batch + seq.k_start * p.v_strides.seq +
                           kv_head * p.v_strides.head;
        T* const dk = static_cast<T*>(g.dk) + b * g.dk_strides.batch + seq.k_start * g.dk_strides.seq +
                      kv_head * g.dk_strides.head;
        T* const dv = static_cast<T*>(g.dv) + b * g.dv_strides.batch + seq.k_start * g.dv_strides.seq +
                      kv_head * g.dv_strides.head;

        for (int64_t k0 = split * Cfg::keys; k0 < seq.len_k; k0 += s.splits * Cfg::keys) {
            __syncthreads();  // everyone is done with the previous K and V
            load_tile<T, Cfg::keys, kHeadDim, Cfg::pitch>(sK, k, p.k_strides.seq, k0, seq.len_k, head_dim);
            load_tile<T, Cfg::keys, kHeadDim, Cfg::pitch>(sV, v, p.v_strides.seq, k0, seq.len_k, head_dim);
            const BlockRange blocks = query_blocks(band, k0, Cfg::keys, seq.len_q, seq.len_k, Cfg::rows);

            float dk_acc[KT][RD] = {}, dv_acc[KT][RD] = {};
            for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
                const T* const q = static_cast<const T*>(p.q) + b * p.q_strides.batch +
                                   seq.q_start * p.q_strides.seq + h * p.q_strides.head;
                const T* const dout = static_cast<const T*>(g.dout) + b * g.dout_strides.batch +
                                      seq.q_start * g.dout_strides.seq + h * g.dout_strides.head;
                const float slope = p.alibi_slopes != nullptr ? p.alibi_slopes[h] : 0.0f;

                for (int64_t m = blocks.first; m < blocks.end; ++m) {
                    const int64_t q0 = m * Cfg::rows;
                    __syncthreads();  // everyone is done with the previous Q, dO, P and dS
                    load_tile<T, Cfg::rows, kHeadDim, Cfg::pitch>(sQ, q, p.q_strides.seq, q0, seq.len_q, head_dim);
                    load_tile<T, Cfg::rows, kHeadDim, Cfg::pitch>(sdO, dout, g.dout_strides.seq, q0, seq.len_q,
                                                                  head_dim);
                    __syncthreads();

                    // S = Q·Kᵀ, dP = dO·Vᵀ
                    float sc[RM][RN] = {}, dp[RM][RN] = {};
                    for (int d0 = 0; d0 < head_dim; d0 += kHeadDimStep) {
#pragma unroll
                        for (int dd = 0; dd < kHeadDimStep; ++dd) {
                            float qv[RM], ov[RM], kv[RN], vv[RN];
#pragma unroll
                            for (int i = 0; i < RM; ++i) {
                                qv[i] = sQ[(row0 + i) * Cfg::pitch + d0 + dd];
                                ov[i] = sdO[(row0 + i) * Cfg::pitch + d0 + dd];
                            }
#pragma unroll
                            for (int j = 0; j < RN; ++j) {
                                kv[j] = sK[(lane + j * kLanes) * Cfg::pitch + d0 + dd];
                                vv[j] = sV[(lane + j * kLanes) * Cfg::pitch + d0 + dd];
                            }
#pragma unroll
                            for (int i = 0; i < RM; ++i)
#pragma unroll
                                for (int j = 0; j < RN; ++j) {
                                    sc[i][j] = fmaf(qv[i], kv[j], sc[i][j]);
                                    dp[i][j] = fmaf(ov[i], vv[j], dp[i][j]);
                                }
                        }
                    }

                    int first[RM], last[RM];  // each row's visible keys in this tile (tile-relative, clamped)
#pragma unroll
                    for (int i = 0; i < RM; ++i) {
                        const int64_t row = q0 + row0 + i;
                        const bool in_sequence = row < seq.len_q;
                        const int64_t at = lse_index(p, seq, b, h, in_sequence ? row : 0);
                        const float lse = in_sequence ? p.lse[at] : -INFINITY;
                        const float dot = in_sequence ? row_dot[at] : 0.0f;
                        const int64_t upper = min(seq.len_k - 1, row + band.last) - k0;
                        const int64_t lower = row + band.first - k0;
                        last[i] = int(max(int64_t{-1}, min(upper, int64_t{Cfg::keys})));
                        first[i] = int(min(int64_t{Cfg::keys}, max(lower, int64_t{0})));
#pragma unroll
                        for (int j = 0; j < RN; ++j) {
                            const int n = lane + j * kLanes;
                            // s = softcap·tanh(scale·q·k / softcap), ds/d(q·k) = scale·(1 − t²); or s = scale·q·k
                            float score, dscore;
                            if (softcapped) {
                                const float t = tanhf(sc[i][j] * cap_scale);
                                score = p.softcap * t;
                                dscore = p.scale * fmaf(-t, t, 1.0f);
                            } else {
                                score = sc[i][j] * p.scale;
                                dscore = p.scale;
                            }
                            // s −= slope·|i + len_k − len_q − j|
                            if (p.alibi_slopes != nullptr)
                                score = fmaf(-slope, float(llabs(row + alibi - (k0 + n))), score);
                            // P = exp(s − LSE); 0 outside the band and on rows that see no key (LSE = −inf)
                            const bool visible = in_sequence && n >= lower && n <= upper && lse != -INFINITY;
                            const float prob = visible ? expf(score - lse) : 0.0f;
                            // dS = P∘(dP − D), times ds/d(q·k)
                            sP[(row0 + i) * Cfg::p_pitch + n] = prob;
                            sdS[(row0 + i) * Cfg::p_pitch + n] = visible ? prob * (dp[i][j] - dot) * dscore : 0.0f;
                        }
                    }
                    __syncthreads();  // P and dS are whole: dK and dV read them by columns

                    const bool inside = tile_inside_band(band, q0, Cfg::rows, k0, Cfg::keys, seq.len_q, seq.len_k);
                    const int tile_rows = int(min(int64_t{Cfg::rows}, seq.len_q - q0));
                    // dV += Pᵀ·dO, dK += dSᵀ·Q
                    int first_row[KT], last_row[KT];  // the rows of the tile that see each of this thread's keys
#pragma unroll
                    for (int t = 0; t < KT; ++t) {
                        const int64_t key = k0 + key0 + t;
                        first_row[t] = int(min(int64_t{Cfg::rows}, max(key - band.last - q0, int64_t{0})));
                        last_row[t] = int(max(int64_t{-1}, min(key - band.first - q0, int64_t{Cfg::rows})));
                    }
                    if (inside)
                        accumulate_dkv<false, Cfg::pitch, Cfg::p_pitch>(dk_acc, dv_acc, sP, sdS, sdO, sQ, tile_rows,
                                                                        key0, lane, first_row, last_row);
                    else
                        accumulate_dkv<true, Cfg::pitch, Cfg::p_pitch>(dk_acc, dv_acc, sP, sdS, sdO, sQ, tile_rows,
                                                                       key0, lane, first_row, last_row);

                    // dQ += dS·K, kDqColumnsPerPass columns at a time
#pragma unroll 1
                    for (int c0 = 0; c0 < RD; c0 += kDqColumnsPerPass) {
                        float acc[RM][kDqColumnsPerPass] = {};
                        if (inside)
                            accumulate_dq<false, Cfg::keys, Cfg::pitch, Cfg::p_pitch>(acc, sdS, sK, row0, lane, c0,
                                                                                      first, last);
                        else
                            accumulate_dq<true, Cfg::keys, Cfg::pitch, Cfg::p_pitch>(acc, sdS, sK, row0, lane, c0,
                                                                                     first, last);
#pragma unroll
                        for (int i = 0; i < RM; ++i) {
                            const int64_t row = q0 + row0 + i;
                            if (row >= seq.len_q) continue;
                            float* const dq = dq_accum + dq_accum_index(p, s, seq, slice, b, h, row);
#pragma unroll
                            for (int c = 0; c < kDqColumnsPerPass; ++c) {
                                const int col = lane + (c0 + c) * kLanes;
                                if (col >= head_dim) continue;
                                if (g.deterministic)
                                    dq[col] += acc[i][c];
                                else
                                    atomicAdd(dq + col, acc[i][c]);
                            }
                        }
                    }
                }
            }

            // dK and dV of the block, summed over the group's query heads; 0 for keys no row sees
#pragma unroll
            for (int t = 0; t < KT; ++t) {
                const int64_t key = k0 + key0 + t;
                if (key >= seq.len_k) continue;
#pragma unroll
                for (int c = 0; c < RD; ++c) {
                    const int col = lane + c * kLanes;
                    if (col >= head_dim) continue;
                    dk[key * g.dk_strides.seq + col] = from_float<T>(dk_acc[t][c]);
                    dv[key * g.dv_strides.seq + col] = from_float<T>(dv_acc[t][c]);
                }
            }
        }
    }
}

}  // namespace backward

template <typename T, int kHeadDim>
cudaError_t launch_backward_bucket(const Problem& p, const Gradients& g, const BackwardSchedule& s, void* workspace,
                                   int num_sms, cudaStream_t stream) {
    using Cfg = backward::Tile<kHeadDim>;
    static_assert(backward_tile_shape(kHeadDim).keys == Cfg::keys);
    auto* const base = static_cast<unsigned char*>(workspace);
    float* const row_dot = reinterpret_cast<float*>(base);
    float* const dq_accum = reinterpret_cast<float*>(base + s.dq_accum_offset);

    const int64_t rows = p.batch * p.seqlen_q * p.heads_q;  // the row passes' work items, one warp each
    const int64_t row_ctas = std::min({(rows + backward::kRowPassWarps - 1) / backward::kRowPassWarps,
                                       std::max<int64_t>(1, num_sms) * backward::kRowPassCtasPerSm, kMaxGridX});
    const int64_t main_ctas = std::min(s.splits * p.heads_kv * p.batch, kMaxGridX);

    constexpr size_t kShared = Cfg::shared_bytes;
    const cudaError_t attribute = cudaFuncSetAttribute(backward::main_kernel<T, kHeadDim>,
                                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(kShared));
    if (attribute != cudaSuccess) return attribute;

    // a grid of 0 CTAs is a launch error: a pass with no work is left out
    if (row_ctas > 0)
        backward::prepare_kernel<T><<<unsigned(row_ctas), backward::kRowPassThreads, 0, stream>>>(p, g, s, row_dot,
                                                                                                dq_accum);
    if (main_ctas > 0)
        backward::main_kernel<T, kHeadDim><<<unsigned(main_ctas), backward::kThreads, kShared, stream>>>(
            p, g, s, row_dot, dq_accum);
    if (row_ctas > 0)
        backward::convert_kernel<T><<<unsigned(row_ctas), backward::kRowPassThreads, 0, stream>>>(p, g, s, dq_accum);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::general
