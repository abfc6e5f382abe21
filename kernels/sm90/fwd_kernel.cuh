// The sm_90a attention forward: O = softmax(scale·Q·Kᵀ + mask)·V, one 128-row query tile at a time.
//
// Warpgroup 0 (one thread) streams Q and a K/V ring through TMA; warpgroups 1 and 2 each own
// 64 query rows, compute S = Q·Kᵀ (wgmma, both operands in shared memory) and O += P·V (P in
// registers), and take turns issuing their GEMMs (ping-pong), so one warpgroup's softmax runs
// under the other's matrix multiplies. Inside a warpgroup, softmax(j) overlaps Q·K(j-1)ᵀ:
// key blocks run from last to first, so the masked blocks come first. A banded tile (causal
// mask, sliding window) visits only the key blocks its rows see; transformed scores (softcap,
// ALiBi) are rewritten between Q·Kᵀ and the softmax.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "sm90/fwd_params.h"
#include "sm90/sync.cuh"
#include "sm90/tiles.h"
#include "sm90/wgmma.cuh"

namespace flashsci::kernels::sm90 {

// Named barrier ids (0 is __syncthreads): per consumer one turn, one epilogue and one vote barrier.
constexpr int kTurnBarrier = 1;
constexpr int kEpilogueBarrier = kTurnBarrier + kConsumers;
constexpr int kVoteBarrier = kEpilogueBarrier + kConsumers;
constexpr int kWarps = kWarpgroupThreads / 32;
constexpr int kReleaseArrivals = kConsumers * kWarps;  // one arrival per consumer warp frees a buffer

constexpr int kTileSlots = 2;  // tile indices handed from the producer to the consumers

template <int Stages, int QStages>
struct Barriers {
    uint64_t tile_full[kTileSlots], tile_empty[kTileSlots];
    int tile[kTileSlots];
    uint64_t q_full[QStages], q_empty[QStages];
    uint64_t k_full[Stages], k_empty[Stages];
    uint64_t v_full[Stages], v_empty[Stages];
};

__device__ __forceinline__ uint32_t pack(__nv_bfloat16, float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t pack(__half, float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ float2 unpack(__nv_bfloat16, uint32_t w) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w));
}
__device__ __forceinline__ float2 unpack(__half, uint32_t w) { return __half22float2(*reinterpret_cast<const __half2*>(&w)); }

// Nonzero when either 16-bit half of w is an infinity or a NaN (all exponent bits set).
__device__ __forceinline__ uint32_t nonfinite2(__nv_bfloat16, uint32_t w) { return __vcmpeq2(w & 0x7f807f80u, 0x7f807f80u); }
__device__ __forceinline__ uint32_t nonfinite2(__half, uint32_t w) { return __vcmpeq2(w & 0x7c007c00u, 0x7c007c00u); }

// The key blocks of one tile: [begin, end) hold a key some row sees, [unmasked_begin, unmasked_end)
// are seen whole by every row; the others go through the masked path.
struct KeyBlocks {
    int begin, end, unmasked_begin, unmasked_end;
    __device__ __forceinline__ int count() const { return end - begin; }
    __device__ __forceinline__ bool masked(int n) const { return n >= unmasked_end || n < unmasked_begin; }
};

template <int HeadDim, bool Banded>
struct Schedule {
    static constexpr int kN = TileShape<HeadDim, Banded>::block_n;
    int m, head, batch;

    // Unbanded: the m blocks of one head run side by side (its K/V stay in L2). Banded: heads are
    // cut into sections whose K/V fit in L2; inside a section the longest tiles (largest m) go first.
    __device__ __forceinline__ Schedule(const FwdParams& p, int tile) {
        int hb;
        if (Banded) {
            const int section = tile / (p.section_heads * p.num_m_blocks);
            const int within = tile % (p.section_heads * p.num_m_blocks);
            const int heads = min(p.section_heads, p.heads_q * p.batch - section * p.section_heads);
            m = p.num_m_blocks - 1 - within / heads;
            hb = section * p.section_heads + within % heads;
        } else {
            m = tile % p.num_m_blocks;
            hb = tile / p.num_m_blocks;
        }
        head = hb % p.heads_q;
        batch = hb / p.heads_q;
    }
    // Rows m·kBlockM .. m·kBlockM + kBlockM − 1 see keys i + band_first .. i + diagonal (clipped to the sequence).
    __device__ __forceinline__ KeyBlocks key_blocks(const FwdParams& p) const {
        const int first_row = m * kBlockM, last_row = first_row + kBlockM - 1;
        const int any_begin = Banded ? max(0, first_row + p.band_first) : 0;
        const int any_end = Banded ? min(p.seqlen_k, last_row + p.diagonal + 1) : p.seqlen_k;
        const int all_begin = Banded ? max(0, last_row + p.band_first) : 0;
        const int all_end = Banded ? min(p.seqlen_k, first_row + p.diagonal + 1) : p.seqlen_k;
        KeyBlocks b;
        b.begin = any_begin / kN;
        b.end = any_end <= any_begin ? b.begin : (any_end + kN - 1) / kN;
        b.unmasked_begin = (all_begin + kN - 1) / kN;
        b.unmasked_end = max(all_end, 0) / kN;
        return b;
    }
};

template <int HeadDim, typename T, bool Banded, bool Transformed>
struct Forward {
    using Shape = TileShape<HeadDim, Banded>;
    static constexpr int kN = Shape::block_n;
    static constexpr int kStages = Shape::stages;
    static constexpr int kQStages = Shape::q_stages;
    static constexpr int kSlabs = HeadDim / kSlabElems;
    static constexpr int kQkSteps = HeadDim / kMmaK;  // k16 steps of Q·Kᵀ
    static constexpr int kPvSteps = kN / kMmaK;       // k16 steps of P·V
    using Ring = sm90::Ring<kStages>;
    using QRing = sm90::Ring<kQStages>;
    using Sched = Schedule<HeadDim, Banded>;

    struct Smem {
        char* q;  // [kQStages][kConsumers][slab][64][64]
        char* k;  // [kStages][slab][kN][64]
        char* v;  // [kStages][slab][kN][64]
        char* o;  // [kConsumers][slab][64][64]
        __device__ __forceinline__ char* q_stage(int s) const { return q + s * Shape::q_stage_bytes; }
        __device__ __forceinline__ char* k_stage(int s) const { return k + s * Shape::kv_bytes; }
        __device__ __forceinline__ char* v_stage(int s) const { return v + s * Shape::kv_bytes; }
    };

    // ---------------------------------------------------------------- producer (one thread)
    static __device__ __forceinline__ void produce(const FwdParams& p, const Smem& sm, Barriers<kStages, kQStages>& bar,
                                                   const CUtensorMap* tq, const CUtensorMap* tk,
                                                   const CUtensorMap* tv) {
        uint32_t kv = 0, qc = 0, tc = 0;  // K and V ring positions coincide at tile starts
        // Consumers learn each tile (and finally num_tiles, the end) through a two-slot ring.
        auto publish = [&](int tile) {
            const int s = tc % kTileSlots;
            barrier_wait(&bar.tile_empty[s], (tc / kTileSlots & 1) ^ 1);
            bar.tile[s] = tile;
            barrier_arrive(&bar.tile_full[s]);
            ++tc;
        };
        for (int tile = blockIdx.x; tile < p.num_tiles;) {
            publish(tile);
            // Banded tiles differ in length: the next one comes from a global counter (dynamic balance).
            const int next = Banded ? int(gridDim.x) + atomicAdd(p.tile_counter, 1) : tile + int(gridDim.x);
            const Sched t(p, tile);
            tile = next;
            const KeyBlocks kb = t.key_blocks(p);
            const int blocks = kb.count();
            if (blocks == 0) continue;
            const int kv_head = t.head / p.group;
            // K or V block n into the next free stage of its ring.
            auto load_kv = [&](const CUtensorMap* map, char* ring, uint64_t* full, uint64_t* empty, uint32_t count,
                               int n) {
                const int s = Ring::stage(count);
                barrier_wait(&empty[s], Ring::empty_parity(count));
                barrier_expect_bytes(&full[s], Shape::kv_bytes);
                char* dst = ring + s * Shape::kv_bytes;
                for (int slab = 0; slab < kSlabs; ++slab)
                    tma_load(dst + slab * kN * kSlabRowBytes, map, slab * kSlabElems, n * kN, kv_head, t.batch, &full[s]);
            };
            load_kv(tk, sm.k, bar.k_full, bar.k_empty, kv, kb.end - 1);
            // Q: one 64-row half per consumer; a half wholly past seqlen_q is not loaded (its rows are never stored).
            const int row0 = t.m * kBlockM;
            const int halves = min(kConsumers, (p.seqlen_q - row0 + 63) / 64);
            const int qs = QRing::stage(qc);
            barrier_wait(&bar.q_empty[qs], QRing::empty_parity(qc));
            barrier_expect_bytes(&bar.q_full[qs], halves * Shape::q_bytes);
            for (int h = 0; h < halves; ++h)
                for (int slab = 0; slab < kSlabs; ++slab)
                    tma_load(sm.q_stage(qs) + h * Shape::q_bytes + slab * 64 * kSlabRowBytes, tq, slab * kSlabElems,
                             row0 + 64 * h, t.head, t.batch, &bar.q_full[qs]);
            ++qc;
            // K runs one block ahead of V: K[n-1] is in flight while the consumers need V[n].
            for (int i = 0; i < blocks; ++i) {
                if (i + 1 < blocks) load_kv(tk, sm.k, bar.k_full, bar.k_empty, kv + i + 1, kb.end - 2 - i);
                load_kv(tv, sm.v, bar.v_full, bar.v_empty, kv + i, kb.end - 1 - i);
            }
            kv += blocks;
        }
        publish(p.num_tiles);
    }

    // ---------------------------------------------------------------- consumer (one warpgroup, 64 rows)
    struct Consumer {
        const FwdParams& p;
        const Smem& sm;
        Barriers<kStages, kQStages>& bar;
        int cw;                   // consumer index 0/1
        int warp, lane;           // within the warpgroup
        uint32_t kc = 0, vc = 0, qc = 0;
        int qs = 0;               // Q buffer of the current tile

        float s[kN / 2];          // S = Q·Kᵀ, then P in fp32; s[4j+2h+b] is (row 16·warp + lane/4 + 8h, col 8j + 2·(lane%4) + b)
        uint32_t pr[kPvSteps][4]; // P packed as the A operand of P·V, one k16 step per row
        float o[HeadDim / 2];     // O, same layout as s over head_dim columns
        float row_max[2], row_sum[2], rescale[2];

        __device__ __forceinline__ void release(uint64_t* empty) {
            if (lane == 0) barrier_arrive(empty);
        }
        __device__ __forceinline__ void turn_begin() { named_sync(kTurnBarrier + cw, kConsumers * kWarpgroupThreads); }
        __device__ __forceinline__ void turn_end() {
            named_arrive(kTurnBarrier + (cw + 1) % kConsumers, kConsumers * kWarpgroupThreads);
        }

        // S = Q·Kᵀ
        __device__ __forceinline__ void gemm_qk(const char* k) {
            const char* q = sm.q_stage(qs) + cw * Shape::q_bytes;
#pragma unroll
            for (int kk = 0; kk < kQkSteps; ++kk)
                MmaAtom<T, kN>::ss(s, desc_k_major<64>(q, kk), desc_k_major<kN>(k, kk), kk > 0);
        }
        // O = P·V (first block of a tile, accumulate = 0) or O += P·V
        __device__ __forceinline__ void gemm_pv(const char* v, uint32_t accumulate) {
#pragma unroll
            for (int kk = 0; kk < kPvSteps; ++kk)
                MmaAtom<T, HeadDim>::rs(o, pr[kk], desc_n_major<kN>(v, kk), kk > 0 || accumulate);
        }

        __device__ __forceinline__ int row(int m, int h) const { return m * kBlockM + cw * 64 + warp * 16 + lane / 4 + 8 * h; }

        // S = -inf where column 8j + b (of key n·kN + 2·(lane%4) + 8j + b) is past `limit[h]`.
        __device__ __forceinline__ void mask_after(const int (&limit)[2]) {
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int j = 0; j < kN / 8; ++j)
#pragma unroll
                    for (int b = 0; b < 2; ++b)
                        if (8 * j + b > limit[h]) s[4 * j + 2 * h + b] = -INFINITY;
        }
        // Banded: row i sees key j iff i + band_first <= j <= i + diagonal, i.e. iff the unsigned
        // j − (i + band_first) is at most diagonal − band_first (one compare per score; no int overflow
        // since |band_first|, |diagonal| <= seqlen_q + seqlen_k <= 2^30).
        __device__ __forceinline__ void mask_band(int m, int n) {
            const int col0 = n * kN + 2 * (lane % 4);
            const unsigned width = unsigned(p.diagonal - p.band_first);
            const int first[2] = {row(m, 0) + p.band_first - col0, row(m, 1) + p.band_first - col0};
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int j = 0; j < kN / 8; ++j)
#pragma unroll
                    for (int b = 0; b < 2; ++b)
                        if (unsigned(8 * j + b - first[h]) > width) s[4 * j + 2 * h + b] = -INFINITY;
        }
        // Keys past seqlen_k (TMA zero-filled: score 0, not -inf); only the last key block holds them.
        __device__ __forceinline__ void mask_seqlen_k(int n) {
            const int last = p.seqlen_k - 1 - n * kN - 2 * (lane % 4);
            if ((n + 1) * kN > p.seqlen_k) mask_after({last, last});
        }

        // Transformed: S = softcap·tanh(scale·S / softcap) (or scale·S), − slope·|i + seqlen_k − seqlen_q − j|.
        __device__ __forceinline__ void transform(const Sched& t, int n) {
            if (p.softcap > 0.f) {
#pragma unroll
                for (int i = 0; i < kN / 2; ++i) s[i] = p.softcap * tanh_fast(s[i] * p.softcap_inv);
            } else {
#pragma unroll
                for (int i = 0; i < kN / 2; ++i) s[i] *= p.score_scale;
            }
            // Without ALiBi the slope is 0 (a branch here costs more registers than the multiply-adds).
            const float slope = p.alibi_slopes ? __ldg(p.alibi_slopes + t.head) : 0.f;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int distance0 = row(t.m, h) + p.alibi_offset - n * kN - 2 * (lane % 4);
#pragma unroll
                for (int j = 0; j < kN / 8; ++j)
#pragma unroll
                    for (int b = 0; b < 2; ++b)
                        s[4 * j + 2 * h + b] -= slope * fabsf(float(distance0 - 8 * j - b));
            }
        }

        // m_new = max(m, rowmax(S)); P = exp2(S·scale_log2 − m_new·scale_log2); l = l·exp2((m−m_new)·scale_log2) + rowsum(P)
        template <bool CheckInf>
        __device__ __forceinline__ void softmax() {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float mx = row_max[h];
#pragma unroll
                for (int j = 0; j < kN / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                // A row with no visible key yet keeps max −inf; subtracting 0 keeps exp2(−inf) = 0, not NaN.
                const float shift = (CheckInf && mx == -INFINITY) ? 0.f : mx * p.scale_log2;
                rescale[h] = exp2_approx(row_max[h] * p.scale_log2 - shift);
                row_max[h] = mx;
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < kN / 8; ++j)
#pragma unroll
                    for (int b = 0; b < 2; ++b) {
                        float& x = s[4 * j + 2 * h + b];
                        x = exp2_approx(fmaf(x, p.scale_log2, -shift));
                        sum += x;
                    }
                row_sum[h] = row_sum[h] * rescale[h] + sum;
            }
        }

        // P = T(S), laid out as the A fragments of P·V (accumulator pairs, lower column in the low half).
        __device__ __forceinline__ void convert_p() {
#pragma unroll
            for (int kk = 0; kk < kPvSteps; ++kk)
#pragma unroll
                for (int r = 0; r < 4; ++r) pr[kk][r] = pack(T{}, s[8 * kk + 2 * r], s[8 * kk + 2 * r + 1]);
        }

        // O = O·exp2(m_old − m_new)
        __device__ __forceinline__ void rescale_o() {
#pragma unroll
            for (int j = 0; j < HeadDim / 8; ++j)
#pragma unroll
                for (int i = 0; i < 4; ++i) o[4 * j + i] *= rescale[i / 2];
        }

        // Whether the V stage holds a NaN or an infinity, agreed by the whole warpgroup. Tensor cores
        // would multiply a masked key's zero weight by it (0·NaN = NaN) and reach rows that never see it.
        __device__ __forceinline__ bool v_nonfinite(const char* v) {
            constexpr int kChunks = Shape::kv_bytes / int(sizeof(uint4));
            uint32_t bad = 0;
            for (int c = warp * 32 + lane; c < kChunks; c += kWarpgroupThreads) {
                const uint4 x = reinterpret_cast<const uint4*>(v)[c];
                bad |= nonfinite2(T{}, x.x) | nonfinite2(T{}, x.y) | nonfinite2(T{}, x.z) | nonfinite2(T{}, x.w);
            }
            return named_vote_any(kVoteBarrier + cw, kWarpgroupThreads, bad != 0);
        }

        // O = P·V or O += P·V on the CUDA cores, skipping zero weights: a masked key's non-finite value
        // never reaches a row. Consumes pr: each k16 step is shifted into pr[0], where key 8·half + k8
        // of the step sits in register pr[0][2·half + h] of the row quad's lane k8 / 2.
        __device__ __forceinline__ void pv_exact(const char* v, uint32_t accumulate) {
            if (!accumulate)
#pragma unroll
                for (int i = 0; i < HeadDim / 2; ++i) o[i] = 0.f;
#pragma unroll 1
            for (int kk = 0; kk < kPvSteps; ++kk) {
#pragma unroll 1
                for (int k16 = 0; k16 < kMmaK; ++k16) {
                    const int key = kk * kMmaK + k16;
                    float weight[2];
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const uint32_t word = k16 < 8 ? pr[0][h] : pr[0][2 + h];
                        const float2 w = unpack(T{}, __shfl_sync(0xffffffffu, word, (lane & ~3) | (k16 % 8) / 2));
                        weight[h] = k16 % 2 ? w.y : w.x;
                    }
#pragma unroll
                    for (int j = 0; j < HeadDim / 8; ++j) {
                        const char* src = v + (j / 8) * kN * kSlabRowBytes + key * kSlabRowBytes +
                                          ((j % 8 ^ key % 8) << 4) + 4 * (lane % 4);
                        const float2 x = unpack(T{}, *reinterpret_cast<const uint32_t*>(src));
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            o[4 * j + 2 * h] += weight[h] != 0.f ? weight[h] * x.x : 0.f;
                            o[4 * j + 2 * h + 1] += weight[h] != 0.f ? weight[h] * x.y : 0.f;
                        }
                    }
                }
#pragma unroll
                for (int i = 0; i + 1 < kPvSteps; ++i)
#pragma unroll
                    for (int r = 0; r < 4; ++r) pr[i][r] = pr[i + 1][r];
            }
        }

        // One key block n: S = Q·K[n]ᵀ and O += P·V[n+1] in flight together; softmax(S) once S lands.
        // Exact: P·V[n+1] on the CUDA cores first instead (see pv_exact).
        template <bool Masked, bool Exact>
        __device__ __forceinline__ void step(const Sched& t, int n, uint32_t accumulate) {
            const int ks = Ring::stage(kc), vs = Ring::stage(vc);
            if (Exact) pv_exact(sm.v_stage(vs), accumulate);
            barrier_wait(&bar.k_full[ks], Ring::parity(kc));
            pin(s), pin(o), pin(pr);
            turn_begin();
            wgmma_fence();
            gemm_qk(sm.k_stage(ks));
            wgmma_commit();
            if (!Exact) {
                barrier_wait(&bar.v_full[vs], Ring::parity(vc));
                gemm_pv(sm.v_stage(vs), accumulate);
                wgmma_commit();
            }
            turn_end();
            wgmma_wait<Exact ? 0 : 1>();
            pin(s);
            release(&bar.k_empty[ks]);
            ++kc;
            if (Transformed) transform(t, n);
            if (Masked) mask_band(t.m, n);
            softmax<Masked>();
            if (!Exact) wgmma_wait<0>();
            pin(o), pin(pr);
            release(&bar.v_empty[vs]);
            ++vc;
            rescale_o();
            convert_p();
        }

        // A step whose P·V block n + 1 was masked checks that V first (the check is rarely true).
        template <bool Masked>
        __device__ __forceinline__ void step(const Sched& t, int n, uint32_t accumulate, const KeyBlocks& kb) {
            if (kb.masked(n + 1)) {
                const int vs = Ring::stage(vc);
                barrier_wait(&bar.v_full[vs], Ring::parity(vc));
                if (v_nonfinite(sm.v_stage(vs))) return step<Masked, true>(t, n, accumulate);
            }
            step<Masked, false>(t, n, accumulate);
        }

        __device__ __forceinline__ void run_tile(const Sched& t, const KeyBlocks& kb) {
            qs = QRing::stage(qc);
            barrier_wait(&bar.q_full[qs], QRing::parity(qc));
            ++qc;
            // First block: S = Q·K[last]ᵀ, always through the masked path.
            int n = kb.end - 1;
            {
                const int ks = Ring::stage(kc);
                barrier_wait(&bar.k_full[ks], Ring::parity(kc));
                turn_begin();
                wgmma_fence();
                gemm_qk(sm.k_stage(ks));
                wgmma_commit();
                turn_end();
                wgmma_wait<0>();
                pin(s);
                release(&bar.k_empty[ks]);
                ++kc;
            }
            row_max[0] = row_max[1] = -INFINITY;
            row_sum[0] = row_sum[1] = 0.f;
            if (Transformed) transform(t, n);
            if (Banded) mask_band(t.m, n);
            mask_seqlen_k(n);
            softmax<true>();
            convert_p();
            // Masked blocks after the band's fully seen part, the fully seen part, masked blocks before it;
            // P·V[n + 1] accumulates unless n + 1 is the first block visited.
            for (--n; n >= kb.begin && n >= kb.unmasked_end; --n) step<true>(t, n, n + 2 < kb.end, kb);
            for (; n >= max(kb.begin, kb.unmasked_begin); --n) step<false>(t, n, n + 2 < kb.end, kb);
            for (; n >= kb.begin; --n) step<true>(t, n, n + 2 < kb.end, kb);
            if (!Shape::o_aliases_q) release(&bar.q_empty[qs]);  // last read of Q is done
            // O += P·V[begin]
            const int vs = Ring::stage(vc);
            barrier_wait(&bar.v_full[vs], Ring::parity(vc));
            if (kb.masked(kb.begin) && v_nonfinite(sm.v_stage(vs))) {
                pv_exact(sm.v_stage(vs), kb.count() > 1);
            } else {
                pin(o), pin(pr);
                wgmma_fence();
                gemm_pv(sm.v_stage(vs), kb.count() > 1);
                wgmma_commit();
                wgmma_wait<0>();
                pin(o);
            }
            release(&bar.v_empty[vs]);
            ++vc;
        }

        // O /= l, LSE = m·scale + ln(l); a row with no visible key gets O = 0, LSE = −inf, and a NaN
        // sum (a NaN among the row's scores) stays NaN in both.
        __device__ __forceinline__ void finalize(const Sched& t) {
            float lse[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float l = row_sum[h];
                l += __shfl_xor_sync(0xffffffffu, l, 1);
                l += __shfl_xor_sync(0xffffffffu, l, 2);
                const bool empty = l == 0.f;
                rescale[h] = empty ? 0.f : 1.f / l;
                lse[h] = empty ? -INFINITY : (row_max[h] * p.scale_log2 + __log2f(l)) * float(M_LN2);
            }
            rescale_o();
            if (p.lse && lane % 4 == 0)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = row(t.m, h);
                    if (r < p.seqlen_q) p.lse[(int64_t(t.batch) * p.heads_q + t.head) * p.seqlen_q + r] = lse[h];
                }
        }

        // O: registers → swizzled shared tile (conflict-free 4-byte stores) → TMA store, clipped at seqlen_q.
        __device__ __forceinline__ void store(const Sched& t, const CUtensorMap* to) {
            const int tid = warp * 32 + lane;
            char* tile = (Shape::o_aliases_q ? sm.q_stage(qs) : sm.o) + cw * Shape::q_bytes;
            if (!Shape::o_aliases_q) {  // the previous tile's store must have read the staging tile
                if (tid == 0) tma_store_wait_read();
                named_sync(kEpilogueBarrier + cw, kWarpgroupThreads);
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = warp * 16 + lane / 4 + 8 * h;
#pragma unroll
                for (int j = 0; j < HeadDim / 8; ++j) {
                    const int slab = j / 8, chunk = j % 8;
                    char* dst = tile + slab * 64 * kSlabRowBytes + r * kSlabRowBytes + ((chunk ^ (r % 8)) << 4) + 4 * (lane % 4);
                    *reinterpret_cast<uint32_t*>(dst) = pack(T{}, o[4 * j + 2 * h], o[4 * j + 2 * h + 1]);
                }
            }
            fence_async_shared();
            named_sync(kEpilogueBarrier + cw, kWarpgroupThreads);
            if (tid == 0) {
                const int row0 = t.m * kBlockM + cw * 64;
                if (row0 < p.seqlen_q) {
                    for (int slab = 0; slab < kSlabs; ++slab)
                        tma_store(to, slab * kSlabElems, row0, t.head, t.batch, tile + slab * 64 * kSlabRowBytes);
                    tma_store_commit();
                }
                if (Shape::o_aliases_q) {  // Q's shared memory is free once the store has read it
                    tma_store_wait_read();
                    barrier_arrive(&bar.q_empty[qs], kWarps);  // on behalf of the warpgroup's warps
                }
            }
        }

        // A tile whose rows see no key: O = 0, LSE = −inf, written directly.
        __device__ __forceinline__ void store_empty(const Sched& t) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = row(t.m, h);
                if (r >= p.seqlen_q) continue;
                T* dst = static_cast<T*>(p.o) + t.batch * p.o_batch_stride + r * p.o_seq_stride + t.head * p.o_head_stride;
                for (int j = 0; j < HeadDim / 8; ++j) *reinterpret_cast<uint32_t*>(dst + 8 * j + 2 * (lane % 4)) = 0u;
                if (p.lse && lane % 4 == 0) p.lse[(int64_t(t.batch) * p.heads_q + t.head) * p.seqlen_q + r] = -INFINITY;
            }
        }
    };

    static __device__ __forceinline__ void consume(const FwdParams& p, const Smem& sm, Barriers<kStages, kQStages>& bar, int cw,
                                                   const CUtensorMap* to) {
        Consumer c{p, sm, bar, cw, int(threadIdx.x % kWarpgroupThreads) / 32, int(threadIdx.x % 32)};
        if (cw == 1) named_arrive(kTurnBarrier, kConsumers * kWarpgroupThreads);  // consumer 0 takes the first turn
        for (uint32_t tc = 0;; ++tc) {
            const int s = tc % kTileSlots;
            barrier_wait(&bar.tile_full[s], tc / kTileSlots & 1);
            const int tile = bar.tile[s];
            __syncwarp();
            c.release(&bar.tile_empty[s]);
            if (tile >= p.num_tiles) break;
            const Sched t(p, tile);
            const KeyBlocks kb = t.key_blocks(p);
            if (kb.count() == 0) {
                c.store_empty(t);
                continue;
            }
            c.run_tile(t, kb);
            c.finalize(t);
            c.store(t, to);
        }
        if (threadIdx.x % kWarpgroupThreads == 0) tma_store_wait_all();
    }
};

template <int HeadDim, typename T, bool Banded, bool Transformed>
__global__ void __launch_bounds__(kThreads, 1)
    fwd_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ CUtensorMap tq,
               const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
               const __grid_constant__ CUtensorMap to) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using F = Forward<HeadDim, T, Banded, Transformed>;
    using Shape = typename F::Shape;
    constexpr int kStages = F::kStages;
    __shared__ Barriers<kStages, F::kQStages> bar;  // static shared memory also marks the sm_90a body (see fwd_ready)
    extern __shared__ char smem_raw[];
    char* base = reinterpret_cast<char*>(
        (reinterpret_cast<uintptr_t>(smem_raw) + Shape::smem_alignment - 1) / Shape::smem_alignment * Shape::smem_alignment);
    const typename F::Smem sm{base, base + Shape::k_offset, base + Shape::v_offset, base + Shape::o_offset};

    const int wg = threadIdx.x / kWarpgroupThreads;
    if (threadIdx.x == 0) {
        for (int s = 0; s < kTileSlots; ++s) {
            barrier_init(&bar.tile_full[s], 1);
            barrier_init(&bar.tile_empty[s], kReleaseArrivals);
        }
        for (int s = 0; s < F::kQStages; ++s) {
            barrier_init(&bar.q_full[s], 1);
            barrier_init(&bar.q_empty[s], kReleaseArrivals);
        }
        for (int s = 0; s < kStages; ++s) {
            barrier_init(&bar.k_full[s], 1);
            barrier_init(&bar.k_empty[s], kReleaseArrivals);
            barrier_init(&bar.v_full[s], 1);
            barrier_init(&bar.v_empty[s], kReleaseArrivals);
        }
        barrier_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        registers_release<Shape::producer_registers>();
        if (threadIdx.x == 0) {
            tma_prefetch_map(&tq), tma_prefetch_map(&tk), tma_prefetch_map(&tv), tma_prefetch_map(&to);
            F::produce(p, sm, bar, &tq, &tk, &tv);
        }
    } else {
        registers_claim<Shape::consumer_registers>();
        F::consume(p, sm, bar, wg - 1, &to);
    }
#endif
}

template <int HeadDim, typename T, bool Banded, bool Transformed>
bool fwd_ready() {
    cudaFuncAttributes a{};
    return cudaFuncGetAttributes(&a, fwd_kernel<HeadDim, T, Banded, Transformed>) == cudaSuccess && a.binaryVersion == 90 &&
           a.sharedSizeBytes > 0;
}

template <int HeadDim, typename T, bool Banded, bool Transformed>
cudaError_t launch_fwd(const FwdParams& p, const FwdMaps& maps, int grid, cudaStream_t stream) {
    constexpr int kSmem = TileShape<HeadDim, Banded>::smem_request;
    auto kernel = fwd_kernel<HeadDim, T, Banded, Transformed>;
    if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem); e != cudaSuccess)
        return e;
    kernel<<<grid, kThreads, kSmem, stream>>>(p, maps.q, maps.k, maps.v, maps.o);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::sm90
