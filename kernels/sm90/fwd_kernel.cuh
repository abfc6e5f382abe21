// The sm_90a attention forward: O = softmax(scale·Q·Kᵀ + mask)·V, one 128- or 192-row query tile at a time.
//
// Warpgroup 0 (one thread) streams Q and a K/V ring through TMA; the consumer warpgroups (2, or 3 per
// tiles.h) each own 64 query rows, compute S = Q·Kᵀ (wgmma, both operands in shared memory) and O += P·V
// (P in registers), and take turns issuing their GEMMs (ping-pong), so one warpgroup's softmax runs
// under the others' matrix multiplies. Inside a warpgroup, softmax(j) overlaps Q·K(j-1)ᵀ:
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

#include "problem.h"
#include "sm90/fwd_params.h"
#include "sm90/sync.cuh"
#include "sm90/tiles.h"
#include "sm90/wgmma.cuh"

namespace flashsci::kernels::sm90 {

// Named barrier ids (0 is __syncthreads): per consumer one turn and one epilogue barrier; one for all consumers
// before O is staged over the V ring.
constexpr int kTurnBarrier = 1;
constexpr int kEpilogueBarrier = kTurnBarrier + kMaxConsumers;
constexpr int kOverVBarrier = kEpilogueBarrier + kMaxConsumers;
constexpr int kTurnThreads = 2 * kWarpgroupThreads;  // a turn passes from one consumer warpgroup to the next
constexpr int kWarps = kWarpgroupThreads / 32;

constexpr int kTileSlots = 2;  // tile indices handed from the producer to the consumers

template <int Stages, int QStages>
struct Barriers {
    uint64_t tile_full[kTileSlots], tile_empty[kTileSlots];
    int tile[kTileSlots];
    uint64_t q_full[QStages], q_empty[QStages];
    uint64_t k_full[Stages], k_empty[Stages];
    uint64_t v_full[Stages], v_empty[Stages];
    uint64_t o_read;  // O staged over the V ring: the tile's O store has read it (the ring may take V again)
};

__device__ __forceinline__ uint32_t pack(__nv_bfloat16, float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t pack(__half, float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// The key blocks of one tile: [begin, end) hold a key some row sees, [unmasked_begin, unmasked_end)
// are seen whole by every row; the others go through the masked path.
struct KeyBlocks {
    int begin, end, unmasked_begin, unmasked_end;
    __device__ __forceinline__ int count() const { return end - begin; }
};

template <bool Warp>
struct WarpTag {};

// One tile's sequence: its first packed row of Q/O (q_start) and of K/V (k_start), its lengths, and its key band.
// Dense problems: rows start at 0 (the batch coordinate locates the sequence), lengths and band are the plan's.
// Varlen: read from cu_seqlens and clamped into the packed tensors, whose maps' batch coordinate is 0 (map_batch).
template <int HeadDim, bool Banded, bool Varlen, bool Wide>
struct Schedule {
    static constexpr int kN = TileShape<HeadDim, Banded, Wide>::block_n;
    static constexpr int kBlockM = TileShape<HeadDim, Banded, Wide>::block_m;
    int m, head, batch;  // head: the head pack (the query head itself when pack is 1); batch: the sequence
    int q_start, k_start;
    int len_q_, len_k_, band_first_, diagonal_;  // varlen only: dense problems read the plan's (a constant bank)

    // Unbanded: the m blocks of one head run side by side (its K/V stay in L2). Banded: heads are
    // cut into sections whose K/V fit in L2; inside a section the longest tiles (largest m) go first.
    // Warp: a whole warp constructs it (the consumers): the offsets are broadcast from lane 0, so the
    // compiler knows them warp-uniform (a branch on a per-lane load would serialize the wgmmas).
    template <bool Warp>
    __device__ __forceinline__ Schedule(const FwdParams& p, int tile, WarpTag<Warp>) {
        int hb;
        if (Banded) {
            const int section = tile / (p.section_heads * p.num_m_blocks);
            const int within = tile % (p.section_heads * p.num_m_blocks);
            const int heads = min(p.section_heads, p.head_packs * p.batch - section * p.section_heads);
            m = p.num_m_blocks - 1 - within / heads;
            hb = section * p.section_heads + within % heads;
        } else {
            m = tile % p.num_m_blocks;
            hb = tile / p.num_m_blocks;
        }
        head = hb % p.head_packs;
        batch = hb / p.head_packs;
        if (!Varlen) {
            q_start = k_start = 0;
            return;
        }
        // The clamps of sequence() in src/problem.h: no offset reaches a row outside [0, total).
        auto load = [](const int* x) { return Warp ? __shfl_sync(0xffffffffu, __ldg(x), 0) : __ldg(x); };
        const int q_begin = min(max(load(p.cu_seqlens_q + batch), 0), p.total_q);
        const int q_end = min(max(load(p.cu_seqlens_q + batch + 1), q_begin), p.total_q);
        const int k_begin = min(max(load(p.cu_seqlens_k + batch), 0), p.total_k);
        const int k_end = min(max(load(p.cu_seqlens_k + batch + 1), k_begin), p.total_k);
        q_start = q_begin, k_start = k_begin;
        const int len_q = len_q_ = min(q_end - q_begin, p.seqlen_q);
        const int len_k = len_k_ = min(k_end - k_begin, p.seqlen_k);
        if (Banded) {  // key_band() of src/problem.h for this sequence (|values| <= 2^30: no overflow)
            const int reach = len_q + len_k;
            const int window_diagonal = p.mask == int(Mask::causal_top_left) ? 0 : len_k - len_q;
            diagonal_ = p.mask == int(Mask::none) ? len_k : window_diagonal;
            band_first_ = p.window_left >= 0 ? window_diagonal - min(p.window_left, reach) : -reach;
            if (p.window_right >= 0) diagonal_ = min(diagonal_, window_diagonal + min(p.window_right, reach));
        }
    }
    // The sequence's lengths and band (row i sees key j iff i + band_first <= j <= i + diagonal).
    __device__ __forceinline__ int len_q(const FwdParams& p) const { return Varlen ? len_q_ : p.seqlen_q; }
    __device__ __forceinline__ int len_k(const FwdParams& p) const { return Varlen ? len_k_ : p.seqlen_k; }
    __device__ __forceinline__ int band_first(const FwdParams& p) const { return Varlen ? band_first_ : p.band_first; }
    __device__ __forceinline__ int diagonal(const FwdParams& p) const { return Varlen ? diagonal_ : p.diagonal; }
    // The tile rows of the sequence: len_q positions × pack heads.
    __device__ __forceinline__ int rows(const FwdParams& p) const { return len_q(p) << p.pack_shift; }
    // Whether the tile holds a row of its sequence (varlen tiles past a shorter sequence's end do nothing).
    __device__ __forceinline__ bool live(const FwdParams& p) const { return !Varlen || m * kBlockM < rows(p); }
    // ALiBi distance |i + alibi_offset − j| from the sequence's bottom-right diagonal.
    __device__ __forceinline__ int alibi_offset(const FwdParams& p) const { return Varlen ? len_k_ - len_q_ : p.alibi_offset; }
    // The batch coordinate of the TMA maps and O: the sequence, or 0 in a varlen batch's packed tensors.
    __device__ __forceinline__ int map_batch() const { return Varlen ? 0 : batch; }
    // Flags the tile's sequence and kv head in FwdParams::redo (and that some pair is).
    __device__ __forceinline__ void flag_redo(const FwdParams& p) const {
        p.redo[0] = 1;
        p.redo[1 + batch * (p.heads_q / p.group) + (head << p.pack_shift) / p.group] = 1;
    }
    // Positions i of rows m·kBlockM .. m·kBlockM + kBlockM − 1 see keys i + band_first .. i + diagonal (clipped
    // to the sequence).
    __device__ __forceinline__ KeyBlocks key_blocks(const FwdParams& p) const {
        const int first_row = (m * kBlockM) >> p.pack_shift, last_row = (m * kBlockM + kBlockM - 1) >> p.pack_shift;
        const int any_begin = Banded ? max(0, first_row + band_first(p)) : 0;
        const int any_end = Banded ? min(len_k(p), last_row + diagonal(p) + 1) : len_k(p);
        const int all_begin = Banded ? max(0, last_row + band_first(p)) : 0;
        const int all_end = Banded ? min(len_k(p), first_row + diagonal(p) + 1) : len_k(p);
        KeyBlocks b;
        b.begin = any_begin / kN;
        b.end = any_end <= any_begin ? b.begin : (any_end + kN - 1) / kN;
        b.unmasked_begin = (all_begin + kN - 1) / kN;
        b.unmasked_end = max(all_end, 0) / kN;
        return b;
    }
};

// Varlen: a packed variable-length batch (its own kernel, so the dense one's registers stay as they were).
// Wide: the wide tile of tiles.h (hd64: every plain problem and causal ones from 8192 keys; hd128: dense plain ones
// with long key sequences).
template <int HeadDim, typename T, bool Banded, bool Transformed, bool Varlen, bool Wide>
struct Forward {
    using Shape = TileShape<HeadDim, Banded, Wide>;
    static constexpr int kConsumers = Shape::consumers;
    static constexpr int kBlockM = Shape::block_m;
    static constexpr int kReleaseArrivals = kConsumers * kWarps;  // one arrival per consumer warp frees a buffer
    // Masked key blocks hide keys from some rows only when banded or packed (varlen): the tensor cores multiply a
    // masked key's zero weight by its V, and 0·NaN = 0·Inf = NaN reaches rows that never see it. So those
    // kernels flag a tile whose O holds a NaN or an infinity for the exact redo (FwdParams::redo). A dense
    // unbanded tile masks just the keys past seqlen_k, which TMA fills with zeros.
    static constexpr bool kGuardV = Banded || Varlen;
    // Tiles differ in length when banded or varlen: they are handed out by a global counter (dynamic balance).
    static constexpr bool kDynamicTiles = Banded || Varlen;
    static constexpr int kN = Shape::block_n;
    static constexpr int kStages = Shape::stages;
    static constexpr int kQStages = Shape::q_stages;
    static constexpr int kSlabs = Shape::slabs;
    static constexpr int kQkSteps = HeadDim / kMmaK;  // k16 steps of Q·Kᵀ
    static constexpr int kPvSteps = kN / kMmaK;       // k16 steps of P·V
    using Ring = sm90::Ring<kStages>;
    using QRing = sm90::Ring<kQStages>;
    using ORing = sm90::Ring<1>;
    using Sched = Schedule<HeadDim, Banded, Varlen, Wide>;

    struct Smem {
        char* q;  // [kQStages][kConsumers][slab][64][64]
        char* k;  // [kStages][slab][kN][64]
        char* v;  // [kStages][slab][kN][64]
        char* o;  // [kConsumers][slab][64][64], its own buffer or over the V ring (Shape::o_over_v)
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
            const int next = kDynamicTiles ? int(gridDim.x) + atomicAdd(p.tile_counter, 1) : tile + int(gridDim.x);
            const Sched t(p, tile, WarpTag<false>{});
            tile = next;
            if (!t.live(p)) continue;
            const KeyBlocks kb = t.key_blocks(p);
            const int blocks = kb.count();
            if (blocks == 0) continue;
            const int kv_head = (t.head << p.pack_shift) / p.group;
            // K or V block n into the next free stage of its ring.
            auto load_kv = [&](const CUtensorMap* map, char* ring, uint64_t* full, uint64_t* empty, uint32_t count,
                               int n) {
                const int s = Ring::stage(count);
                barrier_wait(&empty[s], Ring::empty_parity(count));
                barrier_expect_bytes(&full[s], Shape::kv_bytes);
                char* dst = ring + s * Shape::kv_bytes;
                for (int slab = 0; slab < kSlabs; ++slab)
                    tma_load(dst + slab * kN * kSlabRowBytes, map, slab * kSlabElems, t.k_start + n * kN, kv_head, t.map_batch(),
                             &full[s]);
            };
            // V block i of the tile; the first waits until the previous tile's O, staged over the V ring, is stored
            // (Q was loaded once for each tile before this one that stages an O: qc - 1 of them).
            auto load_v = [&](int i) {
                if (Shape::o_over_v && i == 0) barrier_wait(&bar.o_read, ORing::empty_parity(qc - 1));
                load_kv(tv, sm.v, bar.v_full, bar.v_empty, kv + i, kb.end - 1 - i);
            };
            load_kv(tk, sm.k, bar.k_full, bar.k_empty, kv, kb.end - 1);
            // Q: one 64-row half per consumer; a half wholly past the sequence is not loaded (its rows are never
            // stored). Varlen rows past len_q are the next sequence's, computed on but never stored either.
            const int row0 = t.m * kBlockM;
            const int halves = min(kConsumers, (t.rows(p) - row0 + kMmaM - 1) / kMmaM);
            const int qs = QRing::stage(qc);
            barrier_wait(&bar.q_empty[qs], QRing::empty_parity(qc));
            barrier_expect_bytes(&bar.q_full[qs], halves * Shape::q_bytes);
            const int position0 = t.q_start + (row0 >> p.pack_shift), half_positions = kMmaM >> p.pack_shift;
            for (int h = 0; h < halves; ++h)
                for (int slab = 0; slab < kSlabs; ++slab)
                    tma_load_packed(sm.q_stage(qs) + h * Shape::q_bytes + slab * kMmaM * kSlabRowBytes, tq,
                                    slab * kSlabElems, position0 + h * half_positions, t.head, t.map_batch(), &bar.q_full[qs]);
            ++qc;
            // K runs one block ahead of V: K[n-1] is in flight while the consumers need V[n].
            for (int i = 0; i < blocks; ++i) {
                if (i + 1 < blocks) load_kv(tk, sm.k, bar.k_full, bar.k_empty, kv + i + 1, kb.end - 2 - i);
                load_v(i);
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
        int cw;                   // consumer index 0 .. kConsumers − 1
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
        __device__ __forceinline__ void turn_begin() { named_sync(kTurnBarrier + cw, kTurnThreads); }
        __device__ __forceinline__ void turn_end() { named_arrive(kTurnBarrier + (cw + 1) % kConsumers, kTurnThreads); }

        // S = Q·Kᵀ
        __device__ __forceinline__ void gemm_qk(const char* k) {
            const char* q = sm.q_stage(qs) + cw * Shape::q_bytes;
#pragma unroll
            for (int kk = 0; kk < kQkSteps; ++kk)
                MmaAtom<T, kN>::ss(s, desc_k_major<64, Shape::qk_desc_from_base>(q, kk),
                                   desc_k_major<kN, Shape::qk_desc_from_base>(k, kk), kk > 0);
        }
        // O = P·V (first block of a tile, accumulate = 0) or O += P·V
        __device__ __forceinline__ void gemm_pv(const char* v, uint32_t accumulate) {
#pragma unroll
            for (int kk = 0; kk < kPvSteps; ++kk)
                MmaAtom<T, HeadDim>::rs(o, pr[kk], desc_n_major<kN>(v, kk), kk > 0 || accumulate);
        }

        // Tile row of this thread's h-th accumulator row; the position and query head of tile row r.
        __device__ __forceinline__ int row(int m, int h) const { return m * kBlockM + cw * 64 + warp * 16 + lane / 4 + 8 * h; }
        __device__ __forceinline__ int position(int r) const { return r >> p.pack_shift; }
        __device__ __forceinline__ int q_head(const Sched& t, int r) const { return (t.head << p.pack_shift) + (r & (p.pack - 1)); }

        // S = -inf where `hidden(h, c)`: row h's column c = 8j + b (key n·kN + 2·(lane%4) + c) is not seen.
        template <typename Hidden>
        __device__ __forceinline__ void mask_where(Hidden hidden) {
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int j = 0; j < kN / 8; ++j)
#pragma unroll
                    for (int b = 0; b < 2; ++b)
                        if (hidden(h, 8 * j + b)) s[4 * j + 2 * h + b] = -INFINITY;
        }
        // Banded: row i sees key j iff i + band_first <= j <= i + diagonal, i.e. iff the unsigned
        // j − (i + band_first) is at most diagonal − band_first (one compare per score; no int overflow
        // since |band_first|, |diagonal| <= seqlen_q + seqlen_k <= 2^30).
        __device__ __forceinline__ void mask_band(const Sched& t, int n) {
            const int col0 = n * kN + 2 * (lane % 4);
            const unsigned width = unsigned(t.diagonal(p) - t.band_first(p));
            const int first[2] = {position(row(t.m, 0)) + t.band_first(p) - col0,
                                  position(row(t.m, 1)) + t.band_first(p) - col0};
            mask_where([&](int h, int c) { return unsigned(c - first[h]) > width; });
        }
        // Keys past the sequence's len_k (TMA zero-filled, or a varlen batch's next sequence: a score, not
        // -inf); only the last key block holds them, and it is a masked block (its V is checked for NaN/Inf).
        __device__ __forceinline__ void mask_seqlen_k(const Sched& t, int n) {
            const int last = t.len_k(p) - 1 - n * kN - 2 * (lane % 4);
            if ((n + 1) * kN > t.len_k(p)) mask_where([&](int, int c) { return c > last; });
        }

        // Transformed: S = softcap·tanh(scale·S / softcap) (or scale·S), − slope·|i + len_k − len_q − j|.
        __device__ __forceinline__ void transform(const Sched& t, int n) {
            if (p.softcap > 0.f) {
#pragma unroll
                for (int i = 0; i < kN / 2; ++i) s[i] = p.softcap * tanh_fast(s[i] * p.softcap_inv);
            } else {
#pragma unroll
                for (int i = 0; i < kN / 2; ++i) s[i] *= p.score_scale;
            }
            // Without ALiBi the slope is 0 (a branch here costs more registers than the multiply-adds). With it
            // a tile holds one head (the host packs no GQA heads: the slope would differ between rows), so a row
            // is its position.
            const float slope = p.alibi_slopes ? __ldg(p.alibi_slopes + t.head) : 0.f;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int distance0 = row(t.m, h) + t.alibi_offset(p) - n * kN - 2 * (lane % 4);
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

        // Waits until V stage vs (the current V block) has landed.
        __device__ __forceinline__ void wait_v(int vs) { barrier_wait(&bar.v_full[vs], Ring::parity(vc)); }

        // A step's end: its P·V has landed (`pending`: there was one; its V stage is freed), O ·= rescale, P → pr.
        // At the end of its own step, ptxas hoists that wait above the independent softmax before it (SASS: every
        // MUFU.EX2 after the wait), so the softmax does not overlap P·V. Retired at the top of the next step,
        // behind the loop's branch, it does. That pays only where P·V is longest (hd256): for smaller head dims one
        // consumer's softmax then runs into the other's and the ping-pong loosens (docs/sm90-kernel.md). Not with
        // softcap or ALiBi, nor in the guarded (banded, varlen) kernels: they spill with it.
        static constexpr bool kRetireLate = !kGuardV && !Transformed && HeadDim == 256;
        __device__ __forceinline__ void retire(bool pending) {
            wgmma_wait<0>();
            pin(o), pin(pr);
            if (pending) {
                release(&bar.v_empty[Ring::stage(vc)]);
                ++vc;
            }
            rescale_o();
            convert_p();
        }

        // One key block n: S = Q·K[n]ᵀ and O += P·V[n+1] in flight together; softmax(S) once S lands. Retiring
        // late, it first retires the previous step (which existed unless this is the first: `accumulate`).
        template <bool Masked>
        __device__ __forceinline__ void step(const Sched& t, int n, uint32_t accumulate) {
            if (kRetireLate) retire(accumulate);
            const int ks = Ring::stage(kc), vs = Ring::stage(vc);
            barrier_wait(&bar.k_full[ks], Ring::parity(kc));
            pin(s), pin(o), pin(pr);
            turn_begin();
            wgmma_fence();
            gemm_qk(sm.k_stage(ks));
            wgmma_commit();
            wait_v(vs);
            gemm_pv(sm.v_stage(vs), accumulate);
            wgmma_commit();
            turn_end();
            wgmma_wait<1>();
            pin(s);
            release(&bar.k_empty[ks]);
            ++kc;
            if (Transformed) transform(t, n);
            if (Masked) mask_band(t, n);
            softmax<Masked>();
            if (!kRetireLate) retire(true);
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
            if (Banded) mask_band(t, n);
            mask_seqlen_k(t, n);
            softmax<true>();
            if (!kRetireLate) convert_p();
            // Masked blocks after the band's fully seen part, the fully seen part, masked blocks before it;
            // P·V[n + 1] accumulates unless n + 1 is the first block visited. Not unrolled: the loop's branch
            // keeps each step's softmax ahead of the next step's wait (see retire).
#pragma unroll 1
            for (--n; n >= kb.begin && n >= kb.unmasked_end; --n) step<true>(t, n, n + 2 < kb.end);
#pragma unroll 1
            for (; n >= max(kb.begin, kb.unmasked_begin); --n) step<false>(t, n, n + 2 < kb.end);
            if (Banded)  // only a window's left edge masks blocks below the fully seen part
#pragma unroll 1
                for (; n >= kb.begin; --n) step<true>(t, n, n + 2 < kb.end);
            release(&bar.q_empty[qs]);  // last read of Q is done
            // O += P·V[begin]
            if (kRetireLate) retire(kb.count() > 1);
            const int vs = Ring::stage(vc);
            wait_v(vs);
            pin(o), pin(pr);
            wgmma_fence();
            gemm_pv(sm.v_stage(vs), kb.count() > 1);
            wgmma_commit();
            wgmma_wait<0>();
            pin(o);
            release(&bar.v_empty[vs]);
            ++vc;
        }

        // O /= l, LSE = m·scale + ln(l); a row with no visible key gets O = 0, LSE = −inf, and a NaN
        // sum (a NaN among the row's scores) stays NaN in both. Guarded, a row with a finite sum but a NaN or an
        // infinity in O flags the tile for the redo: V put it there, maybe through a masked key's zero weight on the
        // tensor cores (a NaN or Inf score makes the sum NaN: that row is NaN whatever V holds). Only rows the
        // tile stores count: a Q half wholly past the sequence is not even loaded (stale shared memory).
        __device__ __forceinline__ void finalize(const Sched& t) {
            float l[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                l[h] = row_sum[h];
                l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
                l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
            }
            if (kGuardV) {  // o·0 is NaN exactly where o is a NaN or an infinity (o/l is finite iff o is, for l > 0)
                float probe[2] = {0.f, 0.f};
#pragma unroll
                for (int j = 0; j < HeadDim / 8; ++j)
#pragma unroll
                    for (int i = 0; i < 4; ++i) probe[i / 2] = fmaf(o[4 * j + i], 0.f, probe[i / 2]);
                bool redo = false;
#pragma unroll
                for (int h = 0; h < 2; ++h) redo |= probe[h] != probe[h] && l[h] == l[h] && row(t.m, h) < t.rows(p);
                if (__any_sync(0xffffffffu, redo) && lane == 0) t.flag_redo(p);
            }
            float lse[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const bool empty = l[h] == 0.f;
                rescale[h] = empty ? 0.f : 1.f / l[h];
                lse[h] = empty ? -INFINITY : (row_max[h] * p.scale_log2 + __log2f(l[h])) * float(M_LN2);
            }
            rescale_o();
            if (p.lse && lane % 4 == 0)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = row(t.m, h);
                    if (r < t.rows(p)) p.lse[lse_index(t, r)] = lse[h];
                }
        }

        // LSE of tile row r: [batch, heads_q, seqlen_q], varlen [heads_q, total_q].
        __device__ __forceinline__ int64_t lse_index(const Sched& t, int r) const {
            return Varlen ? int64_t(q_head(t, r)) * p.total_q + t.q_start + position(r)
                          : (int64_t(t.batch) * p.heads_q + q_head(t, r)) * p.seqlen_q + position(r);
        }

        // Tile row r in O.
        __device__ __forceinline__ T* o_row(const Sched& t, int r) const {
            return static_cast<T*>(p.o) + t.map_batch() * p.o_batch_stride + int64_t(t.q_start + position(r)) * p.o_seq_stride +
                   q_head(t, r) * p.o_head_stride;
        }

        // O: registers → swizzled shared tile (stmatrix: 16-byte rows, conflict-free) → TMA store, clipped at seqlen_q.
        // Varlen: a half that crosses its sequence's end copies its rows < len_q from the shared tile with
        // 16-byte stores instead (the TMA store would overwrite the next sequence's rows). Not from the
        // registers: reading wgmma accumulators under a per-row branch serializes the wgmmas (C7520).
        __device__ __forceinline__ void store(const Sched& t, const CUtensorMap* to) {
            const int tid = warp * 32 + lane;
            char* tile = sm.o + cw * Shape::q_bytes;
            if (Shape::o_over_v) {  // both consumers' P·V have read the V ring (the last tile's store read it before)
                named_sync(kOverVBarrier, kConsumers * kWarpgroupThreads);
            } else {  // the previous tile's store must have read the staging tile
                if (tid == 0) tma_store_wait_read();
                named_sync(kEpilogueBarrier + cw, kWarpgroupThreads);
            }
            // Column blocks j and j + 1, row halves 0 and 1: four 8×8 matrices per stmatrix; this lane addresses
            // row lane % 8 of matrix lane / 8.
            const int r = warp * 16 + lane % 8 + 8 * (lane / 8 % 2);
#pragma unroll
            for (int j = 0; j < HeadDim / 8; j += 2) {
                const int jj = j + lane / 16, slab = jj / 8, chunk = jj % 8;
                char* row = tile + slab * 64 * kSlabRowBytes + r * kSlabRowBytes + ((chunk ^ (r % 8)) << 4);
                store_matrices(row, pack(T{}, o[4 * j], o[4 * j + 1]), pack(T{}, o[4 * j + 2], o[4 * j + 3]),
                               pack(T{}, o[4 * j + 4], o[4 * j + 5]), pack(T{}, o[4 * j + 6], o[4 * j + 7]));
            }
            fence_async_shared();
            named_sync(kEpilogueBarrier + cw, kWarpgroupThreads);  // the warpgroup's writes are all its store needs
            if (Varlen && t.m * kBlockM + cw * 64 + 64 > t.rows(p)) {
                const int row0 = t.m * kBlockM + cw * 64;
                constexpr int kChunks = HeadDim / 8;  // 16-byte chunks per row
                const int rows = max(0, t.rows(p) - row0);
                for (int i = tid; i < rows * kChunks; i += kWarpgroupThreads) {
                    const int r = i / kChunks, c = i % kChunks;
                    const uint4 x = *reinterpret_cast<const uint4*>(tile + (c / 8) * 64 * kSlabRowBytes + r * kSlabRowBytes +
                                                                    ((c % 8 ^ r % 8) << 4));
                    *reinterpret_cast<uint4*>(o_row(t, row0 + r) + 8 * c) = x;
                }
                if (Shape::o_over_v) {  // the warpgroup has read the staged O for the last time (a named barrier, not
                    // each warp's lane 0 after __syncwarp: racecheck does not order the other lanes' reads by that)
                    named_sync(kEpilogueBarrier + cw, kWarpgroupThreads);
                    if (tid == 0) barrier_arrive(&bar.o_read, kWarps);  // on behalf of the warpgroup's warps
                }
                return;
            }
            if (tid == 0) {
                const int row0 = t.m * kBlockM + cw * 64;
                if (row0 < t.rows(p)) {
                    for (int slab = 0; slab < kSlabs; ++slab)
                        tma_store_packed(to, slab * kSlabElems, t.q_start + (row0 >> p.pack_shift), t.head, t.map_batch(),
                                         tile + slab * kMmaM * kSlabRowBytes);
                    tma_store_commit();
                }
                if (Shape::o_over_v) {  // the V ring is free once the store has read O
                    tma_store_wait_read();
                    barrier_arrive(&bar.o_read, kWarps);  // on behalf of the warpgroup's warps
                }
            }
        }

        // A tile whose rows see no key: O = 0, LSE = −inf, written directly.
        __device__ __forceinline__ void store_empty(const Sched& t) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = row(t.m, h);
                if (r >= t.rows(p)) continue;
                T* dst = o_row(t, r) + 2 * (lane % 4);
                for (int j = 0; j < HeadDim / 8; ++j) *reinterpret_cast<uint32_t*>(dst + 8 * j) = 0u;
                if (p.lse && lane % 4 == 0) p.lse[lse_index(t, r)] = -INFINITY;
            }
        }
    };

    static __device__ __forceinline__ void consume(const FwdParams& p, const Smem& sm, Barriers<kStages, kQStages>& bar, int cw,
                                                   const CUtensorMap* to) {
        Consumer c{p, sm, bar, cw, int(threadIdx.x % kWarpgroupThreads) / 32, int(threadIdx.x % 32)};
        if (cw == kConsumers - 1) named_arrive(kTurnBarrier, kTurnThreads);  // consumer 0 takes the first turn
        for (uint32_t tc = 0;; ++tc) {
            const int s = tc % kTileSlots;
            barrier_wait(&bar.tile_full[s], tc / kTileSlots & 1);
            // Lane 0 reads the slot and frees it (the arrival follows its own read); the warp gets the value by shuffle.
            const int tile = __shfl_sync(0xffffffffu, c.lane == 0 ? bar.tile[s] : 0, 0);
            c.release(&bar.tile_empty[s]);
            if (tile >= p.num_tiles) break;
            const Sched t(p, tile, WarpTag<true>{});
            if (!t.live(p)) continue;
            const KeyBlocks kb = t.key_blocks(p);
            if ((Banded || Varlen) && kb.count() == 0) {  // dense unbanded tiles see every key (seqlen_k >= 1)
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

template <int HeadDim, typename T, bool Banded, bool Transformed, bool Varlen, bool Wide>
__global__ void __launch_bounds__(TileShape<HeadDim, Banded, Wide>::threads, 1)
    fwd_kernel(const __grid_constant__ FwdParams p, const __grid_constant__ CUtensorMap tq,
               const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
               const __grid_constant__ CUtensorMap to) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using F = Forward<HeadDim, T, Banded, Transformed, Varlen, Wide>;
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
            barrier_init(&bar.tile_empty[s], F::kReleaseArrivals);
        }
        for (int s = 0; s < F::kQStages; ++s) {
            barrier_init(&bar.q_full[s], 1);
            barrier_init(&bar.q_empty[s], F::kReleaseArrivals);
        }
        for (int s = 0; s < kStages; ++s) {
            barrier_init(&bar.k_full[s], 1);
            barrier_init(&bar.k_empty[s], F::kReleaseArrivals);
            barrier_init(&bar.v_full[s], 1);
            barrier_init(&bar.v_empty[s], F::kReleaseArrivals);
        }
        barrier_init(&bar.o_read, F::kReleaseArrivals);
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

template <int HeadDim, typename T, bool Banded, bool Transformed, bool Wide>
bool fwd_ready() {
    cudaFuncAttributes a{};
    return cudaFuncGetAttributes(&a, fwd_kernel<HeadDim, T, Banded, Transformed, false, Wide>) == cudaSuccess &&
           a.binaryVersion == 90 && a.sharedSizeBytes > 0;
}

template <int HeadDim, typename T, bool Banded, bool Transformed, bool Wide>
cudaError_t launch_fwd(const FwdParams& p, const FwdMaps& maps, int grid, cudaStream_t stream) {
    constexpr int kSmem = TileShape<HeadDim, Banded, Wide>::smem_request;
    static_assert(!Wide || !Transformed, "the wide tile runs untransformed problems only");
    // Variable-length batches (cu_seqlens given) run the Varlen kernel of the instance; a wide tile has one where it
    // replaces the usual plain tile (tiles.h).
    auto kernel = fwd_kernel<HeadDim, T, Banded, Transformed, false, Wide>;
    if constexpr (!Wide || wide_takes_varlen(HeadDim, Banded))
        if (p.cu_seqlens_q) kernel = fwd_kernel<HeadDim, T, Banded, Transformed, true, Wide>;
    if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem); e != cudaSuccess)
        return e;
    kernel<<<grid, TileShape<HeadDim, Banded, Wide>::threads, kSmem, stream>>>(p, maps.q, maps.k, maps.v, maps.o);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::sm90
