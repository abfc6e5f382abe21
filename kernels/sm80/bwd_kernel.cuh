// The sm_80 backward's main kernel (FlashAttention-2's backward on mma.sync). One CTA per (key-block split, kv head,
// sequence) keeps K and V of a key block in shared memory and walks every query head of its GQA group and every
// query block the key block meets, with Q and dO streaming in by cp.async. Per step:
//   S = Q·Kᵀ, dP = dO·Vᵀ; P = exp2(s·log2e − LSE·log2e) from the forward's LSE; dS = P∘(dP − D) (× (1 − t²) with a
//   softcap); P and dS go to shared memory in the element type; dV += Pᵀ·dO, dK += dSᵀ·Q in registers (one writer
//   per key: no atomics); dQ = scale·dS·K is added into the fp32 accumulator (atomics, or plain adds into the
//   split's own slice when deterministic, general/backward_schedule.h).
// D = rowsum(dO∘O) before, and dQ's conversion after, are the general backward's passes (bwd.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/device.cuh"
#include "general/backward_schedule.h"
#include "sm80/bwd_index.h"
#include "sm80/bwd_instances.h"
#include "sm80/bwd_tiles.h"
#include "sm80/ptx.cuh"

namespace flashsci::kernels::sm80 {
namespace backward {

// Two 8×8 matrices of 16-bit elements (lanes 0-15 give the row addresses).
__device__ __forceinline__ void load_matrix_pair(uint32_t (&r)[2], uint32_t row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(row));
}

// kRows × kChunks chunks of src (row r at src + r·stride) into a swizzled tile (bwd_index.h); zeros for rows >=
// valid_rows and chunks >= valid_chunks. `fallback` is a readable address for the copies that read nothing.
template <int kChunks, int kRows, typename T>
__device__ __forceinline__ void load_tile(T* tile, const T* src, int64_t stride, int64_t valid_rows, int valid_chunks,
                                          const T* fallback) {
    constexpr int kCopies = kRows * kChunks;
    static_assert(kCopies % kBackwardThreads == 0, "tile loads split evenly");
#pragma unroll
    for (int it = 0; it < kCopies / kBackwardThreads; ++it) {
        const int e = it * kBackwardThreads + int(threadIdx.x);
        const int row = e / kChunks, chunk = e % kChunks;
        const bool valid = row < valid_rows && chunk < valid_chunks;
        copy_async(tile + tile_chunk_offset(kChunks, row, chunk),
                   valid ? src + row * stride + chunk * kChunkElems : fallback, valid);
    }
}

// x, which the compiler can no longer see through: addresses built from it are not hoisted out of the step loop
// (where they would stay live, one register each, for the whole kernel).
__device__ __forceinline__ uint32_t opaque_u32(uint32_t x) {
    asm volatile("" : "+r"(x));
    return x;
}

// A lane's ldmatrix addresses for one warp's operand in a [rows][kChunks] tile (bwd_index.h: lane_pair_offset):
// pattern `at` (row_major_address or pair_major_address), the operand's origin at (row0, chunk0).
template <int kChunks>
struct LaneAddresses {
    uint32_t pair[lane_pairs(kChunks)];
};
template <typename T, int kChunks>
__device__ __forceinline__ LaneAddresses<kChunks> lane_addresses(uint32_t tile, RowCol at, int row0, int chunk0) {
    LaneAddresses<kChunks> a;
#pragma unroll
    for (int i = 0; i < lane_pairs(kChunks); ++i)
        a.pair[i] = tile + sizeof(T) * lane_pair_offset(kChunks, at, row0, chunk0, i);
    return a;
}
// The address of the operand's 16×16 block at relative stored row `row` and chunk `chunk` (compile-time constants).
template <typename T, int kChunks>
__device__ __forceinline__ uint32_t block_address(const LaneAddresses<kChunks>& a, int row, int chunk) {
    return a.pair[lane_pair(kChunks, chunk)] + sizeof(T) * block_offset(kChunks, row, chunk);
}

// acc += A·B for one warp's MT × NT m16n8 tiles, over k steps [0, k_steps) of kMaxSteps. A is stored [row][k]
// (plain ldmatrix, row-major lane pattern, origin (row0, 0)) or, kATrans, [k][row] (ldmatrix.trans, pair-major,
// origin (0, row0 / 8)); B is stored [n][k] (plain, pair-major, origin (col0, 0)) or, kBTrans, [k][n] (.trans,
// row-major, origin (0, col0 / 8)). An odd last n8 tile of a plain B loads with ldmatrix.x2, which reads the
// addresses of lanes 0-15 only.
template <typename T, int MT, int NT, int kMaxSteps, bool kATrans, int kAChunks, bool kBTrans, int kBChunks>
__device__ __forceinline__ void warp_gemm(float (&acc)[MT][NT][4], const LaneAddresses<kAChunks>& a_at,
                                          const LaneAddresses<kBChunks>& b_at, int k_steps) {
    static_assert(!kBTrans || NT % 2 == 0, "transposed B loads in n16 pairs");
#pragma unroll
    for (int ks = 0; ks < kMaxSteps; ++ks) {
        if (ks < k_steps) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (kATrans)
                    load_matrices_transposed(a[mt], block_address<T>(a_at, ks * kMmaK, 2 * mt));
                else
                    load_matrices(a[mt], block_address<T>(a_at, mt * kMmaM, 2 * ks));
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t b[4];
                if constexpr (kBTrans)
                    load_matrices_transposed(b, block_address<T>(b_at, ks * kMmaK, 2 * np));
                else
                    load_matrices(b, block_address<T>(b_at, np * 2 * kMmaN, 2 * ks));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma<T>(acc[mt][2 * np], a[mt], b[0], b[1]);
                    mma<T>(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
                }
            }
            if constexpr (NT % 2 == 1) {
                uint32_t b[2];
                load_matrix_pair(b, block_address<T>(b_at, (NT - 1) * kMmaN, 2 * ks));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) mma<T>(acc[mt][NT - 1], a[mt], b[0], b[1]);
            }
        }
    }
}

// A thread's C fragments: tile (mt, nt) element e is (row0 + 16·mt + g + 8·(e / 2), col0 + 8·nt + 2c + e % 2), with
// g = lane / 4 and c = lane % 4 (index.h: c_element).
template <typename T, typename Shape>
__global__ void __launch_bounds__(kBackwardThreads)
    backward_kernel(const Problem p, const Gradients g, const general::BackwardSchedule s, const float* row_dot,
                    float* dq_accum) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr int kM = Shape::block_m, kN = Shape::block_n, kD = Shape::head_dim;
    constexpr int kChunks = Shape::chunks, kPChunks = Shape::p_chunks;
    using Sdp = typename Shape::Sdp;
    using Dkv = typename Shape::Dkv;
    using Dq = typename Shape::Dq;
    extern __shared__ __align__(128) unsigned char shared[];
    T* const sK = reinterpret_cast<T*>(shared);   // [kN][kD], swizzled (bwd_index.h)
    T* const sV = sK + kN * kD;                   // [kN][kD]
    T* const sP = sV + kN * kD;                   // [kM][kN]
    T* const sdS = sP + kM * kN;                  // [kM][kN]: P∘(dP − D), × (1 − t²) with a softcap
    T* const sQ = sdS + kM * kN;                  // [stages][kM][kD]
    T* const sdO = sQ + Shape::stages * kM * kD;  // [stages][kM][kD]

    // The thread's warp, its c_element coordinates (g, 2c) and ldmatrix lane patterns, remade from an opaque() thread
    // index where a phase of the step needs them: held through the step loop, they would take registers the
    // accumulators need.
    struct Coords {
        int warp, quad_row, quad_col;
        RowCol row_major, pair_major;
    };
    const auto coords = [] {
        const int t = int(opaque_u32(threadIdx.x)), lane = t % kWarpSize;
        return Coords{t / kWarpSize, lane / 4, 2 * (lane % 4), row_major_address(lane), pair_major_address(lane)};
    };
    const int head_dim = int(p.head_dim);
    const int valid_chunks = head_dim / kChunkElems;
    const int d_steps = (head_dim + kMmaK - 1) / kMmaK;  // k16 steps of S and dP; the rest are zero padding
    const bool softcapped = p.softcap > 0.0f;
    const float cap_scale = softcapped ? p.scale / p.softcap : 0.0f;  // tanh's argument is scale·q·k / softcap
    const float scale_log2 = p.scale * kLog2e;
    const int64_t dq_row_stride = p.heads_q * p.head_dim;  // between rows of dQ's accumulator (dq_accum_index)
    const int64_t group = p.heads_q / p.heads_kv;
    const int64_t work = s.splits * p.heads_kv * p.batch;
    const T* const q_base = static_cast<const T*>(p.q);
    const T* const k_base = static_cast<const T*>(p.k);
    const T* const v_base = static_cast<const T*>(p.v);
    const T* const do_base = static_cast<const T*>(g.dout);

    for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {
        const int64_t split = w % s.splits;
        const int64_t kv_head = w / s.splits % p.heads_kv;
        const int64_t b = w / s.splits / p.heads_kv;
        const int64_t slice = g.deterministic ? split : 0;
        const Sequence seq = sequence(p, b);  // varlen offsets clamped into the packed tensors
        const KeyBand band = key_band(p, seq.len_q, seq.len_k);
        const Band<int64_t> visible{band.first, band.last};  // index.h's per-element test
        const int64_t alibi = alibi_offset(seq.len_q, seq.len_k);
        // the sequence's row 0 (a varlen batch has batch stride 0 and locates it by its first row)
        const T* const k = k_base + b * p.k_strides.batch + seq.k_start * p.k_strides.seq + kv_head * p.k_strides.head;
        const T* const v = v_base + b * p.v_strides.batch + seq.k_start * p.v_strides.seq + kv_head * p.v_strides.head;
        T* const dk = static_cast<T*>(g.dk) + b * g.dk_strides.batch + seq.k_start * g.dk_strides.seq +
                      kv_head * g.dk_strides.head;
        T* const dv = static_cast<T*>(g.dv) + b * g.dv_strides.batch + seq.k_start * g.dv_strides.seq +
                      kv_head * g.dv_strides.head;

        for (int64_t k0 = split * kN; k0 < seq.len_k; k0 += s.splits * kN) {
            const general::BlockRange blocks = general::query_blocks(band, k0, kN, seq.len_q, seq.len_k, kM);
            const int64_t per_head = blocks.end - blocks.first;
            const int64_t steps = per_head * group;
            // Q and dO of step st into buffer `stage`
            const auto load_step = [&](const BackwardStep& st, int stage) {
                const int64_t q0 = st.q_block * kM;
                const int64_t row = seq.q_start + q0;
                load_tile<kChunks, kM>(
                    sQ + stage * kM * kD,
                    q_base + b * p.q_strides.batch + row * p.q_strides.seq + st.head * p.q_strides.head,
                    p.q_strides.seq, seq.len_q - q0, valid_chunks, q_base);
                load_tile<kChunks, kM>(
                    sdO + stage * kM * kD,
                    do_base + b * g.dout_strides.batch + row * g.dout_strides.seq + st.head * g.dout_strides.head,
                    g.dout_strides.seq, seq.len_q - q0, valid_chunks, do_base);
            };

            __syncthreads();  // every warp is done with the previous key block's tiles
            if (steps > 0) {
                load_tile<kChunks, kN>(sK, k + k0 * p.k_strides.seq, p.k_strides.seq, seq.len_k - k0, valid_chunks,
                                       k_base);
                load_tile<kChunks, kN>(sV, v + k0 * p.v_strides.seq, p.v_strides.seq, seq.len_k - k0, valid_chunks,
                                       v_base);
                load_step(backward_step(0, kv_head * group, blocks.first, per_head), 0);
                commit_copies();
            }

            float dk_acc[Dkv::m_tiles][Dkv::n_tiles][4] = {}, dv_acc[Dkv::m_tiles][Dkv::n_tiles][4] = {};
            BackwardStep st = backward_step(0, kv_head * group, blocks.first, per_head);
            for (int64_t t = 0; t < steps; ++t, st = next_step(st, blocks.first, per_head)) {
                const int64_t q0 = st.q_block * kM;
                const int stage = Shape::double_buffer ? int(t % 2) : 0;
                const int64_t lse_row0 = lse_index(p, seq, b, st.head, q0);  // LSE and D of row q0; the rows follow
                wait_copies<0>();
                __syncthreads();  // this step's Q and dO landed; every warp is done with the last step's tiles
                if (Shape::double_buffer && t + 1 < steps) {
                    load_step(next_step(st, blocks.first, per_head), 1 - stage);
                    commit_copies();
                }
                // shared addresses rebuilt each step (opaque): hoisted, each would hold a register throughout
                const uint32_t q_tile = opaque_u32(shared_address(sQ + stage * kM * kD));
                const uint32_t do_tile = opaque_u32(shared_address(sdO + stage * kM * kD));
                const uint32_t k_tile = opaque_u32(shared_address(sK)), v_tile = opaque_u32(shared_address(sV));
                const uint32_t p_tile = opaque_u32(shared_address(sP)), ds_tile = opaque_u32(shared_address(sdS));

                // The base and D of this thread's row (m tile mt, half): a row past the end, or one that sees no key
                // (LSE = −inf), gets base +inf, so P = 0. Read before the GEMMs, which hide their latency, where the
                // warp has one m tile of rows (two tiles' terms held through the GEMMs would spill).
                struct RowTerms {
                    float base, dot;
                };
                const auto row_terms = [&](int mt, int half) {
                    const Coords me = coords();
                    const int local_row = Sdp::row0(me.warp) + mt * kMmaM + me.quad_row + 8 * half;
                    const bool in_sequence = q0 + local_row < seq.len_q;
                    const float lse = in_sequence ? p.lse[lse_row0 + local_row] : -INFINITY;
                    return RowTerms{lse == -INFINITY ? INFINITY : lse * kLog2e,
                                    in_sequence ? row_dot[lse_row0 + local_row] : 0.0f};
                };
                constexpr bool kEarlyTerms = Sdp::m_tiles == 1;
                RowTerms early[2];
                if constexpr (kEarlyTerms)
#pragma unroll
                    for (int half = 0; half < 2; ++half) early[half] = row_terms(0, half);

                // S = Q·Kᵀ, dP = dO·Vᵀ
                float s_acc[Sdp::m_tiles][Sdp::n_tiles][4] = {}, dp_acc[Sdp::m_tiles][Sdp::n_tiles][4] = {};
                {
                    const Coords me = coords();
                    const int row0 = Sdp::row0(me.warp), col0 = Sdp::col0(me.warp);
                    const RowCol row_major = me.row_major, pair_major = me.pair_major;
                    warp_gemm<T, Sdp::m_tiles, Sdp::n_tiles, kD / kMmaK, false, kChunks, false, kChunks>(
                        s_acc, lane_addresses<T, kChunks>(q_tile, row_major, row0, 0),
                        lane_addresses<T, kChunks>(k_tile, pair_major, col0, 0), d_steps);
                    warp_gemm<T, Sdp::m_tiles, Sdp::n_tiles, kD / kMmaK, false, kChunks, false, kChunks>(
                        dp_acc, lane_addresses<T, kChunks>(do_tile, row_major, row0, 0),
                        lane_addresses<T, kChunks>(v_tile, pair_major, col0, 0), d_steps);
                }

                // P = exp2(s·log2e − LSE·log2e), 0 outside the band; dS = P∘(dP − D) × ds/d(scale·q·k). A tile no
                // mask, softcap or ALiBi touches (kPlain) takes two FMAs, an EX2 and a multiply per element.
                const bool masked = tile_needs_mask(band, q0, kM, k0, kN, seq.len_q, seq.len_k);
                const float slope = p.alibi_slopes != nullptr ? p.alibi_slopes[st.head] : 0.0f;
                const auto probabilities = [&](auto plain) {
                    constexpr bool kPlain = decltype(plain)::value;
                    const Coords me = coords();
                    const int warp = me.warp, quad_row = me.quad_row, quad_col = me.quad_col;
#pragma unroll
                    for (int mt = 0; mt < Sdp::m_tiles; ++mt)
#pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            const int local_row = Sdp::row0(warp) + mt * kMmaM + quad_row + 8 * half;
                            const int64_t row = q0 + local_row;
                            const bool in_sequence = row < seq.len_q;
                            const RowTerms terms = kEarlyTerms ? early[half] : row_terms(mt, half);
                            const float base = terms.base, dot = terms.dot;
#pragma unroll
                            for (int nt = 0; nt < Sdp::n_tiles; ++nt) {
                                float prob[2], ds[2];
#pragma unroll
                                for (int j = 0; j < 2; ++j) {
                                    const float qk = s_acc[mt][nt][2 * half + j];
                                    if constexpr (kPlain) {
                                        prob[j] = exp2_approx(fmaf(qk, scale_log2, -base));
                                        ds[j] = prob[j] * (dp_acc[mt][nt][2 * half + j] - dot);
                                    } else {
                                        const int64_t key = k0 + Sdp::col0(warp) + nt * kMmaN + quad_col + j;
                                        // s = softcap·tanh(scale·q·k / softcap), ds/d(scale·q·k) = 1 − t²; or scale·q·k
                                        float score = qk * p.scale, dtanh = 1.0f;
                                        if (softcapped) {
                                            const float t_cap = tanhf(qk * cap_scale);
                                            score = p.softcap * t_cap;
                                            dtanh = fmaf(-t_cap, t_cap, 1.0f);
                                        }
                                        // s −= slope·|i + len_k − len_q − j|
                                        if (p.alibi_slopes != nullptr)
                                            score = fmaf(-slope, float(llabs(row + alibi - key)), score);
                                        prob[j] = exp2_approx(fmaf(score, kLog2e, -base));
                                        if (masked && !(in_sequence && key_visible(visible, row, key, seq.len_k)))
                                            prob[j] = 0.0f;
                                        ds[j] = prob[j] * (dp_acc[mt][nt][2 * half + j] - dot) * dtanh;
                                    }
                                }
                                const int at_element =
                                    tile_element_offset(kPChunks, local_row, Sdp::col0(warp) + nt * kMmaN + quad_col);
                                *reinterpret_cast<uint32_t*>(sP + at_element) = pack<T>(prob[0], prob[1]);
                                *reinterpret_cast<uint32_t*>(sdS + at_element) = pack<T>(ds[0], ds[1]);
                            }
                        }
                };
                if (!masked && !softcapped && p.alibi_slopes == nullptr)
                    probabilities(std::true_type{});
                else
                    probabilities(std::false_type{});
                __syncthreads();  // P and dS are whole: the transposed GEMMs read them by columns

                // dV += Pᵀ·dO, dK += dSᵀ·Q (rows past the sequence's end add zeros: their P, dS, Q and dO are 0)
                const Coords me = coords();
                if (Dkv::col0(me.warp) < head_dim) {  // a warp whose columns are all padding skips its GEMMs
                    const int row0 = Dkv::row0(me.warp), col0 = Dkv::col0(me.warp);
                    const RowCol row_major = me.row_major, pair_major = me.pair_major;
                    warp_gemm<T, Dkv::m_tiles, Dkv::n_tiles, kM / kMmaK, true, kPChunks, true, kChunks>(
                        dv_acc, lane_addresses<T, kPChunks>(p_tile, pair_major, 0, row0 / kChunkElems),
                        lane_addresses<T, kChunks>(do_tile, row_major, 0, col0 / kChunkElems), kM / kMmaK);
                    warp_gemm<T, Dkv::m_tiles, Dkv::n_tiles, kM / kMmaK, true, kPChunks, true, kChunks>(
                        dk_acc, lane_addresses<T, kPChunks>(ds_tile, pair_major, 0, row0 / kChunkElems),
                        lane_addresses<T, kChunks>(q_tile, row_major, 0, col0 / kChunkElems), kM / kMmaK);
                }

                // dQ += scale·dS·K, in column passes; the accumulator's row q0, the rows following at a fixed stride
                float* const dq_row0 = dq_accum + general::dq_accum_index(p, s, seq, slice, b, st.head, q0);
#pragma unroll 1
                for (int pass = 0; pass < Shape::dq_passes; ++pass) {
                    const Coords me = coords();
                    const int warp = me.warp, quad_row = me.quad_row, quad_col = me.quad_col;
                    const RowCol row_major = me.row_major;
                    const int col0 = pass * (kD / Shape::dq_passes) + Dq::col0(warp);
                    if constexpr (Shape::dq_passes > 1)
                        if (col0 >= head_dim) continue;  // padding columns only
                    float dq_acc[Dq::m_tiles][Dq::n_tiles][4] = {};
                    warp_gemm<T, Dq::m_tiles, Dq::n_tiles, kN / kMmaK, false, kPChunks, true, kChunks>(
                        dq_acc, lane_addresses<T, kPChunks>(ds_tile, row_major, Dq::row0(warp), 0),
                        lane_addresses<T, kChunks>(k_tile, row_major, 0, col0 / kChunkElems), kN / kMmaK);
#pragma unroll
                    for (int mt = 0; mt < Dq::m_tiles; ++mt)
#pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            const int local_row = Dq::row0(warp) + mt * kMmaM + quad_row + 8 * half;
                            if (q0 + local_row >= seq.len_q) continue;
                            float* const dq = dq_row0 + local_row * dq_row_stride;
#pragma unroll
                            for (int nt = 0; nt < Dq::n_tiles; ++nt) {
                                const int col = col0 + nt * kMmaN + quad_col;
#pragma unroll
                                for (int j = 0; j < 2; ++j) {
                                    const float add = dq_acc[mt][nt][2 * half + j] * p.scale;
                                    if (kD != head_dim && col >= head_dim) continue;  // padding columns
                                    if (g.deterministic)
                                        dq[col + j] += add;  // this slice's rows of this head are the CTA's alone
                                    else
                                        atomicAdd(dq + col + j, add);
                                }
                            }
                        }
                }

                if (!Shape::double_buffer && t + 1 < steps) {
                    __syncthreads();  // every warp is done with Q and dO
                    load_step(next_step(st, blocks.first, per_head), 0);
                    commit_copies();
                }
            }

            // dK = scale·dSᵀ·Q and dV of the block, summed over the group's heads; 0 for keys no row sees
            const Coords me = coords();
            const int warp = me.warp, quad_row = me.quad_row, quad_col = me.quad_col;
#pragma unroll
            for (int mt = 0; mt < Dkv::m_tiles; ++mt)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int64_t key = k0 + Dkv::row0(warp) + mt * kMmaM + quad_row + 8 * half;
                    if (key >= seq.len_k) continue;
#pragma unroll
                    for (int nt = 0; nt < Dkv::n_tiles; ++nt) {
                        const int col = Dkv::col0(warp) + nt * kMmaN + quad_col;
                        if (col >= head_dim) continue;
                        *reinterpret_cast<uint32_t*>(dk + key * g.dk_strides.seq + col) =
                            pack<T>(dk_acc[mt][nt][2 * half] * p.scale, dk_acc[mt][nt][2 * half + 1] * p.scale);
                        *reinterpret_cast<uint32_t*>(dv + key * g.dv_strides.seq + col) =
                            pack<T>(dv_acc[mt][nt][2 * half], dv_acc[mt][nt][2 * half + 1]);
                    }
                }
        }
    }
#else
    (void)p, (void)g, (void)s, (void)row_dot, (void)dq_accum;
#endif
}

}  // namespace backward

template <typename T, int HeadDim, Family F>
cudaError_t launch_backward_tile(const Problem& p, const Gradients& g, const general::BackwardSchedule& s,
                                 const float* row_dot, float* dq_accum, cudaStream_t stream) {
    constexpr BackwardTileConfig t = backward_tile_config(HeadDim, F);
    using Shape =
        BackwardShape<HeadDim, t.block_m, t.block_n, t.double_buffer, t.sdp_warps_m, t.dkv_warps_n, t.dq_warps_m>;
    const auto kernel = backward::backward_kernel<T, Shape>;
    const cudaError_t attribute =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Shape::smem));
    if (attribute != cudaSuccess) return attribute;
    const int64_t work = s.splits * p.heads_kv * p.batch;
    if (work == 0) return cudaSuccess;  // a grid of 0 CTAs is a launch error
    const unsigned grid = unsigned(work < kMaxGridX ? work : kMaxGridX);
    kernel<<<grid, Shape::threads, Shape::smem, stream>>>(p, g, s, row_dot, dq_accum);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::sm80
