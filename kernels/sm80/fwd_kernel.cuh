// The sm_80 forward (FlashAttention-2's algorithm on mma.sync): one CTA per (query tile, head, sequence) walks the key
// tiles the tile's rows see, last first. Each warp owns one or two 16-row tiles: S = Q·Kᵀ on m16n8k16 with Q and K
// through ldmatrix, the online softmax in registers, P kept in registers as the A operand of O += P·V with V through
// ldmatrix.trans. K and V stream in by cp.async into swizzled shared tiles, V(n) during Q·Kᵀ(n), K(n−1) during the
// softmax and P·V(n).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/device.cuh"
#include "sm80/index.h"
#include "sm80/instances.h"
#include "sm80/ptx.cuh"
#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {

// kRows × Shape::chunks chunks of src (row r at src + r·stride) into the swizzled tile; zeros for rows >= valid_rows
// and chunks past head_dim. `fallback` is a readable address handed to the copies that read nothing. The threads of
// a pass cover kRowStep rows (a multiple of the swizzle's 8) by kColStep chunks, so a thread's copies all share
// one swizzled column: its shared offsets are one register plus immediates (index.h: load_assignment).
template <typename Shape, int kRows, typename T>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int64_t stride, int64_t valid_rows, int valid_chunks,
                                          const T* fallback) {
    constexpr LoadAssignment kAssign = load_assignment(Shape::threads, Shape::chunks);
    static_assert(kRows % kAssign.row_step == 0);
    const RowCol first = load_first(Shape::threads, Shape::chunks, opaque(int(threadIdx.x)));  // made here, not held
    constexpr int kElems = Shape::chunk_elems;
    const int shared_first = swizzled_offset(Shape::chunks, first.row, first.col, kElems);
    const T* from = src + first.row * stride + first.col * kElems;
    const int64_t step = kAssign.row_step * stride;
#pragma unroll
    for (int i = 0; i < kRows / kAssign.row_step; ++i) {
#pragma unroll
        for (int j = 0; j < Shape::chunks / kAssign.col_step; ++j) {
            const bool valid = first.row + i * kAssign.row_step < valid_rows && first.col + j * kAssign.col_step < valid_chunks;
            copy_async(tile + shared_first + row_offset(Shape::chunks, i * kAssign.row_step, kElems) +
                           j * kAssign.col_step * kElems,
                       valid ? from + j * kAssign.col_step * kElems : fallback, valid);
        }
        from = opaque(from + step);
    }
}

// tanh(x) = 1 − 2 / (e^(2x) + 1): one EX2 and one reciprocal, ±1 where e^(2x) overflows or vanishes, NaN for NaN.
// Its absolute error (~1e-7) is what the softcapped logit softcap·tanh(·) carries into the softmax, far under the
// rounding of the inputs; tanhf's branches and polynomial cost registers the hd256 tiles do not have.
__device__ __forceinline__ float tanh_by_exp(float x) {
    return 1.0f - __fdividef(2.0f, exp2_approx(2.0f * kLog2e * x) + 1.0f);
}

// max and sum over the 4 lanes (a quad) that share a fragment row
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(kFullWarp, x, 1));
    return fmaxf(x, __shfl_xor_sync(kFullWarp, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(kFullWarp, x, 1);
    return x + __shfl_xor_sync(kFullWarp, x, 2);
}

// kTransformed: the scores get a softcap or an ALiBi bias (has_score_transform(p)); the plain kernel, without that
// code, keeps its registers for the accumulators. T = float runs both products on tf32 m16n8k8 in kPasses passes
// (ptx.cuh: mma_fp32; 3 for Precision::fp32_level, 1 for tf32); 16-bit T on m16n8k16 (kPasses 1).
// A thread holds fragment rows g and g + 8 (its halves h = 0, 1) of its warp's 16 and column pairs 2c, 2c + 1 of
// every 8-column block of each of its warp's Shape::m_tiles 16-row tiles: S as s[m tile][key block][4], O as
// o[m tile][head_dim block][4] (index.h: c_element). Two m tiles per warp (FlashAttention-2's 4 warps over 128 rows)
// load each K and V fragment once for two MMAs.
template <typename T, typename Shape, bool kTransformed, int kPasses>
__global__ void __launch_bounds__(Shape::threads, 1) forward_kernel(const Problem p, int* const redo) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr bool kFp32 = std::is_same_v<T, float>;
    constexpr int kN = Shape::block_n, kM = Shape::block_m, kD = Shape::head_dim;
    constexpr int kElems = Shape::chunk_elems;
    constexpr int kStepK = kFp32 ? kMmaKTf32 : kMmaK;  // head_dim per Q·Kᵀ step: two chunks either way
    constexpr int kKeyBlocks = kN / kMmaN, kDimBlocks = kD / kMmaN;
    constexpr int MT = Shape::m_tiles, kWarpRows = MT * kMmaM;
    constexpr bool kSplitSums = kFp32 && kPasses == 3;
    extern __shared__ __align__(128) unsigned char shared[];
    T* const sQ = reinterpret_cast<T*>(shared);  // [kM][kD], swizzled (index.h); after the key loop, O's staging
    T* const sK = sQ + kM * kD;                  // [kN][kD]
    T* const sV = sK + kN * kD;                  // [kN][kD]

    // The thread's warp, lane and fragment coordinates (g = lane / 4, c = lane % 4), remade from an opaque() thread
    // index where they are used: held through the key loop, each would take a register the accumulators need.
    struct Coords {
        int warp, lane, g, c;
    };
    const auto coords = [] {
        const int t = opaque(int(threadIdx.x)), l = t % kWarpSize;
        return Coords{t / kWarpSize, l, l / 4, l % 4};
    };
    const int head_dim = int(p.head_dim);
    const int valid_chunks = head_dim / kElems;
    // Scores s are raw q·k, or with a softcap or ALiBi the final logits: exp(score_scale·s) = exp2(scale_log2·s).
    const float score_scale = kTransformed ? 1.0f : p.scale;
    const float scale_log2 = score_scale * kLog2e;
    const int64_t q_tiles = (p.seqlen_q + kM - 1) / kM;
    const int64_t work = q_tiles * p.heads_q * p.batch;
    const int64_t group = p.heads_q / p.heads_kv;
    // A masked key's zero weight times a NaN or an infinity of its V is NaN on the tensor cores: banded problems
    // flag such rows for the exact redo (sm80.h: redo_flags). Keys past a sequence's end are zero-filled instead.
    const bool guard_v = redo != nullptr;

    // This lane's ldmatrix addresses (index.h), bytes in the shared window. Every row it names has row % 8 ==
    // lane % 8, so chunk pair 2i, 2i + 1 of an 8-chunk group (i = k16 step % 4) lies at one of 4 per-lane columns;
    // the group and the 16-row block are immediates. Made from an opaque() lane where they are used, so that Q's and
    // K's are not held through P·V, nor V's through Q·Kᵀ.
    constexpr int kPairsPerGroup = kSwizzleRows / 2;
    constexpr int kGroupBytes = kSwizzleRows * kChunkBytes;
    constexpr int kRowBytes = Shape::chunks * kChunkBytes;
    constexpr int kBlockRowBytes = kMmaM * kRowBytes;  // a 16-row block
    const auto lane_addresses = [&](uint32_t (&addr)[kPairsPerGroup], const T* tile, int first_row, RowCol (*at)(int)) {
        const int l = coords().lane;
        const RowCol a = at(l);
#pragma unroll
        for (int i = 0; i < kPairsPerGroup; ++i)
            addr[i] = shared_address(tile) + row_offset(Shape::chunks, first_row + a.row, kChunkBytes) +
                      group_column(2 * i + a.col, l % 8, kChunkBytes);
    };

    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
        const int q_tile = int(q_tiles - 1 - w % q_tiles);  // a head's last (longest causal) tile first
        const int h = int(w / q_tiles % p.heads_q);
        const int b = int(w / q_tiles / p.heads_q);
        const Sequence seq = sequence(p, b);  // varlen offsets clamped into the packed tensors
        if (int64_t{q_tile} * kM >= seq.len_q) continue;  // past this sequence's end: the whole CTA moves on
        // In-sequence rows and keys in 32 bits: lengths are under 2^30 (supports()), the band clamped to them.
        const int len_q = int(seq.len_q), len_k = int(seq.len_k), q0 = q_tile * kM;
        const Band<int> band = clamp_band(key_band(p, seq.len_q, seq.len_k), seq.len_q, seq.len_k);
        const int rows = min(kM, len_q - q0);
        const TileRange<int> tiles = key_tiles(band, q0, rows, len_k, kN);
        const TileRange<int> clear = unmasked_tiles(band, q0, rows, len_k, kN);  // tiles no row's mask cuts

        // the sequence's row 0 (a varlen batch has batch stride 0 and locates it by its first row)
        const T* const q_base = static_cast<const T*>(p.q);
        const T* const k_base = static_cast<const T*>(p.k);
        const T* const v_base = static_cast<const T*>(p.v);
        const T* const q = q_base + b * p.q_strides.batch + seq.q_start * p.q_strides.seq + h * p.q_strides.head;
        const T* const k =
            k_base + b * p.k_strides.batch + seq.k_start * p.k_strides.seq + h / group * p.k_strides.head;
        const T* const v =
            v_base + b * p.v_strides.batch + seq.k_start * p.v_strides.seq + h / group * p.v_strides.head;

        __syncthreads();  // the previous work item is done with shared memory
        load_tile<Shape, kM>(sQ, q + q0 * p.q_strides.seq, p.q_strides.seq, rows, valid_chunks, q_base);
        if (tiles.end > tiles.first) {
            const int k0 = (tiles.end - 1) * kN;
            load_tile<Shape, kN>(sK, k + k0 * p.k_strides.seq, p.k_strides.seq, len_k - k0, valid_chunks, k_base);
        }
        commit_copies();

        float o_acc[MT][kDimBlocks][4] = {};  // O·l, unnormalised
        float m[MT][2], l[MT][2];  // running max of the scores s per row; Σ exp(score_scale·(s − m)) over this thread's keys
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

        for (int kt = tiles.end - 1; kt >= tiles.first; --kt) {
            const int k0 = kt * kN;
            wait_copies<0>();
            __syncthreads();  // K(kt) (and Q) landed; every warp is done with V(kt + 1)
            load_tile<Shape, kN>(sV, v + k0 * p.v_strides.seq, p.v_strides.seq, len_k - k0, valid_chunks, v_base);
            commit_copies();

            // S = Q·Kᵀ (k steps past head_dim are all zero: skipped)
            uint32_t q_addr[kPairsPerGroup], k_addr[kPairsPerGroup];
            lane_addresses(q_addr, sQ, coords().warp * kWarpRows, q_address);
            lane_addresses(k_addr, sK, 0, k_address);
            float s[MT][kKeyBlocks][4] = {};
            float s_small[kSplitSums ? MT : 1][kSplitSums ? kKeyBlocks : 1][4] = {};  // 3xTF32's small products
#pragma unroll
            for (int kk = 0; kk < kD / kStepK; ++kk) {
                if (kk * kStepK < head_dim) {
                    uint32_t a[MT][4];
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt)
                        load_matrices(a[mt], q_addr[kk % kPairsPerGroup] + mt * kBlockRowBytes +
                                                 kk / kPairsPerGroup * kGroupBytes);
                    Tf32Parts<kPasses, 4> a_parts[kFp32 ? MT : 1];
                    if constexpr (kFp32)
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) a_parts[mt] = split_tf32<kPasses>(a[mt]);
#pragma unroll
                    for (int nb = 0; nb < kN / kMmaK; ++nb) {
                        uint32_t bk[4];
                        load_matrices(bk, k_addr[kk % kPairsPerGroup] + nb * kBlockRowBytes +
                                              kk / kPairsPerGroup * kGroupBytes);
                        if constexpr (kFp32) {
                            const Tf32Parts<kPasses, 4> b_parts = split_tf32<kPasses>(bk);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                auto& lo = s_small[kSplitSums ? mt : 0];
                                mma_tf32_parts(s[mt][2 * nb], lo[kSplitSums ? 2 * nb : 0], a_parts[mt], b_parts, 0);
                                mma_tf32_parts(s[mt][2 * nb + 1], lo[kSplitSums ? 2 * nb + 1 : 0], a_parts[mt], b_parts, 2);
                            }
                        } else {
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                mma<T>(s[mt][2 * nb], a[mt], bk[0], bk[1]);
                                mma<T>(s[mt][2 * nb + 1], a[mt], bk[2], bk[3]);
                            }
                        }
                    }
                }
            }
            if constexpr (kSplitSums)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int j = 0; j < kKeyBlocks; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e) s[mt][j][e] += s_small[mt][j][e];

            wait_copies<0>();
            __syncthreads();  // V(kt) landed; every warp is done with K(kt)
            if (kt > tiles.first) {
                const int next = k0 - kN;
                load_tile<Shape, kN>(sK, k + next * p.k_strides.seq, p.k_strides.seq, len_k - next, valid_chunks, k_base);
            }
            commit_copies();

            // s = softcap·tanh(scale·s / softcap) (or scale·s); s −= slope·|i + len_k − len_q − j|. The constants are
            // made here from an opaque() head, not held through the tile loop.
            if constexpr (kTransformed) {
                const int head = opaque(h);
                const float slope = p.alibi_slopes != nullptr ? p.alibi_slopes[head] : 0.0f;
                const float cap_scale = p.softcap > 0.0f ? p.scale / p.softcap : 0.0f;  // tanh's argument: scale·s / softcap
                const int alibi = len_k - len_q;  // alibi_offset()
                const Coords t = coords();
                const int row0 = q0 + t.warp * kWarpRows + t.g, key0 = k0 + 2 * t.c;  // m tile 0's half-0 row, first key
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int j = 0; j < kKeyBlocks; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            float& x = s[mt][j][e];
                            const float scaled = p.softcap > 0.0f ? p.softcap * tanh_by_exp(x * cap_scale) : x * p.scale;
                            const int row = row0 + mt * kMmaM + (e / 2) * 8, key = key0 + j * kMmaN + e % 2;
                            x = fmaf(-slope, float(abs(row + alibi - key)), scaled);
                        }
            }
            // S = −inf outside each row's visible keys, on tiles the band or the sequence's end cuts
            if (kt < clear.first || kt >= clear.end) {
                const Coords t = coords();
                const int row0 = q0 + t.warp * kWarpRows + t.g, key0 = k0 + 2 * t.c;  // m tile 0's half-0 row, first key
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int j = 0; j < kKeyBlocks; ++j)
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            if (!key_visible(band, row0 + mt * kMmaM + (e / 2) * 8, key0 + j * kMmaN + e % 2, len_k))
                                s[mt][j][e] = -INFINITY;
            }

            // m_new = max(m_old, rowmax(S)); a row with no visible key yet keeps base 0, so P = 0, not NaN
            float alpha[MT][2];  // exp(score_scale·(m_old − m_new)): O and l rescale
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                float base[2];
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    float tile_max = m[mt][half];
#pragma unroll
                    for (int j = 0; j < kKeyBlocks; ++j)
                        tile_max = fmaxf(tile_max, fmaxf(s[mt][j][2 * half], s[mt][j][2 * half + 1]));
                    const float m_new = quad_max(tile_max);
                    base[half] = (m_new == -INFINITY ? 0.0f : m_new) * scale_log2;
                    alpha[mt][half] = exp2_approx(fmaf(m[mt][half], scale_log2, -base[half]));
                    m[mt][half] = m_new;
                    l[mt][half] *= alpha[mt][half];
                    if constexpr (!kFp32)  // fp32 rescales as it adds the tile's P·V
#pragma unroll
                        for (int d = 0; d < kDimBlocks; ++d) {
                            o_acc[mt][d][2 * half] *= alpha[mt][half];
                            o_acc[mt][d][2 * half + 1] *= alpha[mt][half];
                        }
                }
                // P = exp2(s·scale_log2 − m·scale_log2), one FFMA and one EX2; l += rowsum(P) (this thread's keys)
#pragma unroll
                for (int j = 0; j < kKeyBlocks; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        s[mt][j][e] = exp2_approx(fmaf(s[mt][j][e], scale_log2, -base[e / 2]));
                        l[mt][e / 2] += s[mt][j][e];
                    }
            }

            if constexpr (kFp32) {
                // O += P·V on tf32, key block j a k8 step with its keys relabelled (index.h: tf32_key): A register
                // r is C element tf32_p_element(r) of block j; B registers 0, 1 are V rows 2c, 2c + 1 at column g of
                // each 8-column block, one 32-bit load each. Rows 2c + h of every block share row % 8, so a lane's
                // loads are 4 columns per h plus immediates.
                uint32_t v_word[2][kPairsPerGroup];
                {
                    const Coords t = coords();
                    const int lg = t.g, lc = t.c;
#pragma unroll
                    for (int h = 0; h < 2; ++h)
#pragma unroll
                        for (int i = 0; i < kPairsPerGroup; ++i)
                            v_word[h][i] = shared_address(sV) + row_offset(Shape::chunks, 2 * lc + h, kChunkBytes) +
                                           group_column(2 * i + lg / 4, 2 * lc + h, kChunkBytes) + (lg % 4) * sizeof(float);
                }
                // The tile's P·V is summed apart from O and added in one rounding, O = alpha·O + P·V: the tensor
                // cores truncate as they accumulate, which over every key tile into O would bias it.
                Tf32Parts<kPasses, 4> p_parts[MT][kKeyBlocks];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int j = 0; j < kKeyBlocks; ++j) {
                        uint32_t a[4];
#pragma unroll
                        for (int r = 0; r < 4; ++r) a[r] = __float_as_uint(s[mt][j][tf32_p_element(r)]);
                        p_parts[mt][j] = split_tf32<kPasses>(a);
                    }
#pragma unroll
                for (int d = 0; d < kDimBlocks; ++d) {
                    if (d * kMmaN < head_dim) {
                        float o_tile[MT][4] = {};
#pragma unroll
                        for (int j = 0; j < kKeyBlocks; ++j) {
                            const int at = j * kMmaN * kRowBytes + d / kPairsPerGroup * kGroupBytes;
                            const uint32_t b[2] = {load_shared_word(v_word[0][d % kPairsPerGroup] + at),
                                                   load_shared_word(v_word[1][d % kPairsPerGroup] + at)};
                            const Tf32Parts<kPasses, 2> b_parts = split_tf32<kPasses>(b);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) mma_tf32_parts(o_tile[mt], o_tile[mt], p_parts[mt][j], b_parts, 0);
                        }
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                            for (int e = 0; e < 4; ++e)
                                o_acc[mt][d][e] = fmaf(o_acc[mt][d][e], alpha[mt][e / 2], o_tile[mt][e]);
                    }
                }
            } else {
                // O += P·V: P's C fragments are the A fragments of k slab j (index.h: p_block)
                uint32_t v_addr[kPairsPerGroup];
                lane_addresses(v_addr, sV, 0, v_address);
#pragma unroll
                for (int slab = 0; slab < kN / kMmaK; ++slab) {
                    uint32_t a[MT][4];
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                        for (int r = 0; r < 4; ++r)
                            a[mt][r] = pack<T>(s[mt][p_block(slab, r)][p_element(r)], s[mt][p_block(slab, r)][p_element(r) + 1]);
#pragma unroll
                    for (int dp = 0; dp < kD / kMmaK; ++dp) {
                        if (dp * kMmaK < head_dim) {
                            uint32_t bv[4];
                            load_matrices_transposed(bv, v_addr[dp % kPairsPerGroup] + slab * kBlockRowBytes +
                                                             dp / kPairsPerGroup * kGroupBytes);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                mma<T>(o_acc[mt][2 * dp], a[mt], bv[0], bv[1]);
                                mma<T>(o_acc[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
                            }
                        }
                    }
                }
            }
        }

        // O = acc / l, LSE = score_scale·m + ln(l); a row that saw no key: l = 0, O = 0, LSE = −inf; a row that saw a
        // NaN score: l = NaN, so O and LSE are NaN. Guarded, a row with a finite nonzero l but a NaN or an infinity
        // in O flags its (sequence, kv head) for the redo: V put it there, maybe through a masked key's zero weight.
        const Coords t = coords();
        const int warp = t.warp, lane = t.lane, g = t.g, c = t.c;
        const int row0 = q0 + warp * kWarpRows + g;  // m tile 0's half-0 row (m tile mt, half h: + 16·mt + 8·h)
        float inv[MT][2];
        bool flag = false;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const float l_row = quad_sum(l[mt][half]);
                const int row = row0 + mt * kMmaM + half * 8;
                const bool empty = l_row == 0.0f;
                inv[mt][half] = empty ? 0.0f : 1.0f / l_row;
                if (guard_v) {  // o·0 is NaN exactly where o is a NaN or an infinity
                    float probe = 0.0f;
#pragma unroll
                    for (int d = 0; d < kDimBlocks; ++d)
                        probe = fmaf(o_acc[mt][d][2 * half], 0.0f, fmaf(o_acc[mt][d][2 * half + 1], 0.0f, probe));
                    flag |= probe != probe && l_row == l_row && !empty && row < len_q;
                }
                if (c == 0 && p.lse != nullptr && row < len_q)
                    p.lse[lse_index(p, seq, b, h, row)] = empty ? -INFINITY : fmaf(score_scale, m[mt][half], logf(l_row));
            }
        if (guard_v && __any_sync(kFullWarp, flag) && lane == 0) {
            redo[0] = 1;
            redo[1 + b * p.heads_kv + h / group] = 1;
        }

        // O through this warp's rows of sQ (swizzled), then 16-byte rows out: only its own warp ever read them
        wait_copies<0>();  // Q's copies, when no key tile waited for them (other threads load this warp's rows)
        __syncthreads();
        T* const stage = opaque(sQ + row_offset(Shape::chunks, warp * kWarpRows + g, kElems));  // m tile 0's half-0 row
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int d = 0; d < kDimBlocks; ++d)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const bool empty = inv[mt][half] == 0.0f;
                    const float lo = empty ? 0.0f : o_acc[mt][d][2 * half] * inv[mt][half];
                    const float hi = empty ? 0.0f : o_acc[mt][d][2 * half + 1] * inv[mt][half];
                    // columns 8d + 2c, 8d + 2c + 1 of row g + 16·mt + 8·half of the warp's rows (row % 8 = g)
                    T* const row = stage + row_offset(Shape::chunks, mt * kMmaM + 8 * half, kElems);
                    if constexpr (kFp32) {  // chunk 2d + c / 2, its elements 2·(c % 2), +1
                        const int chunk = 2 * (d % kPairsPerGroup) + c / 2;
                        *reinterpret_cast<float2*>(row + d / kPairsPerGroup * kSwizzleRows * kElems +
                                                   group_column(chunk, g, kElems) + 2 * (c % 2)) = make_float2(lo, hi);
                    } else {  // chunk d, its elements 2c, 2c + 1
                        *reinterpret_cast<uint32_t*>(row + d / kSwizzleRows * kSwizzleRows * kElems +
                                                     group_column(d % kSwizzleRows, g, kElems) + 2 * c) = pack<T>(lo, hi);
                    }
                }
        __syncwarp();
        T* const o = static_cast<T*>(p.o) + b * p.o_strides.batch + seq.q_start * p.o_strides.seq + h * p.o_strides.head;
        constexpr int kWarpChunks = kWarpRows * Shape::chunks;
        static_assert(kWarpChunks % kWarpSize == 0);
#pragma unroll 1  // unrolled, its addresses would be hoisted out of the work loop and held in registers throughout
        for (int it = 0; it < kWarpChunks / kWarpSize; ++it) {
            const int e = it * kWarpSize + lane;
            const int r = e / Shape::chunks, chunk = e % Shape::chunks;
            const int row = q0 + warp * kWarpRows + r;
            if (row < len_q && chunk < valid_chunks)
                *reinterpret_cast<uint4*>(o + row * p.o_strides.seq + chunk * kElems) =
                    *reinterpret_cast<const uint4*>(sQ + swizzled_offset(Shape::chunks, warp * kWarpRows + r, chunk, kElems));
        }
    }
#else
    (void)p, (void)redo;
#endif
}

// The instance for p: transformed or not; fp32 in one tf32 pass (Precision::tf32) or three (3xTF32).
template <typename T, typename Shape, int kPasses>
auto kernel_for(const Problem& p) {
    return has_score_transform(p) ? forward_kernel<T, Shape, true, kPasses> : forward_kernel<T, Shape, false, kPasses>;
}

template <typename T, int HeadDim, int BlockM, int BlockN, int Warps>
cudaError_t launch_tile(const Problem& p, int* redo, cudaStream_t stream) {
    using Shape = TileShape<HeadDim, BlockM, BlockN, Warps, sizeof(T)>;
    constexpr int kTf32Passes = 1, kFp32LevelPasses = 3;
    const auto kernel = [&] {
        if constexpr (std::is_same_v<T, float>)
            return p.precision == Precision::tf32 ? kernel_for<T, Shape, kTf32Passes>(p)
                                                  : kernel_for<T, Shape, kFp32LevelPasses>(p);
        else
            return kernel_for<T, Shape, 1>(p);
    }();
    const cudaError_t attribute =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Shape::smem));
    if (attribute != cudaSuccess) return attribute;
    const int64_t work = (p.seqlen_q + BlockM - 1) / BlockM * p.heads_q * p.batch;
    const unsigned grid = unsigned(std::min(work, kMaxGridX));
    kernel<<<grid, Shape::threads, Shape::smem, stream>>>(p, redo);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::sm80
