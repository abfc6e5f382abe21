// The decoding kernel: one CTA per (sequence, kv head, key split). Its warps take 16-key blocks in turn, each
// staged by cp.async a few blocks ahead, and run S = Q·Kᵀ and O += P·V on mma.sync (m16n8k16) for the up to 16
// query rows that share the kv head, so each K and V byte is read once. The warps' partial softmaxes merge in
// shared memory; the splits', when there are several, in merge_splits() (decode.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/device.cuh"
#include "common/ptx.cuh"
#include "decode/decode.cuh"

namespace flashsci::kernels::decode {

constexpr int kBlockKeys = 16;   // keys per warp step: P·V's MMA K, two of Q·Kᵀ's 8-key N blocks
constexpr int kMmaK = 16;        // head_dim columns per Q·Kᵀ MMA
constexpr int kMmaN = 8;         // head_dim columns per P·V MMA
constexpr int kChunk = 8;        // elements per 16-byte cp.async and per ldmatrix row
constexpr int kRowPad = kChunk;  // one chunk after each shared row: ldmatrix's 8 rows fall on distinct banks
constexpr size_t kSharedPerSm = 228 * 1024;   // an H100/H200 SM's shared memory
constexpr size_t kSharedPerCta = 1024;        // reserved by the system per resident CTA

// Shared memory, in elements of the 2-byte input type: Q [kMaxRows][pitch], then per warp and stage a K and a V
// block [kBlockKeys][pitch]; then per warp P [kMaxRows][kBlockKeys + 1] fp32 for the guarded P·V. After the
// key loop the K/V area holds the warps' O [kMaxRows][kHeadDim], m and l [kMaxRows] (fp32) for their merge, and
// per row its normaliser and LSE.
template <int kHeadDim>
struct Layout {
    static constexpr int warps = pipeline(kHeadDim).warps;
    static constexpr int stages = pipeline(kHeadDim).stages;
    static constexpr int threads = warps * kWarpSize;
    static constexpr int pitch = kHeadDim + kRowPad;
    static constexpr int block = kBlockKeys * pitch;
    static constexpr int q_elements = kMaxRows * pitch;
    static constexpr int kv_elements = warps * stages * 2 * block;
    static constexpr int p_pitch = kBlockKeys + 1;
    static constexpr size_t element_bytes = 2;
    static constexpr size_t p_offset_bytes = (q_elements + kv_elements) * element_bytes;
    static constexpr size_t shared_bytes = p_offset_bytes + size_t(warps) * kMaxRows * p_pitch * sizeof(float);
    static constexpr size_t merge_bytes = (size_t(warps) * kMaxRows * (kHeadDim + 2) + 2 * kMaxRows) * sizeof(float);

    static_assert(warps > 0, "kPipelines has no row for this bucket");
    static_assert(stages >= 2, "a warp computes on one block while the next lands");
    static_assert(kHeadDim % (2 * kMmaN) == 0 && kHeadDim % kMmaK == 0);
    static_assert(merge_bytes <= kv_elements * element_bytes, "the merge reuses the K/V stages");
    static_assert(shared_bytes <= 80 * 1024);
    static_assert(pipeline(kHeadDim).resident * (shared_bytes + kSharedPerCta) <= kSharedPerSm,
                  "kPipelines promises more resident CTAs than shared memory allows");
};

// Whether a staged V block holds a NaN or an infinity (zero-filled rows and columns do not).
template <typename T, int kHeadDim>
__device__ __forceinline__ bool any_nonfinite(const T* block, int lane) {
    bool found = false;
    for (int e = lane; e < kBlockKeys * kHeadDim; e += kWarpSize)
        found |= !isfinite(to_float(block[e / kHeadDim * Layout<kHeadDim>::pitch + e % kHeadDim]));
    return __any_sync(kFullWarp, found);
}

// ---- the kernel ------------------------------------------------------------------------------------------------
// A thread holds MMA fragment rows g and g + 8 (its "halves" h = 0, 1) and column pairs 2t, 2t + 1 of each
// 8-column block, g = lane / 4, t = lane % 4. Row r of an item exists when r < group · len_q.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(Layout<kHeadDim>::threads, pipeline(kHeadDim).resident)
    decode_kernel(const Problem p, const Split split) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using L = Layout<kHeadDim>;
    constexpr int kOutBlocks = kHeadDim / kMmaN;
    extern __shared__ __align__(16) unsigned char shared[];
    T* const sQ = reinterpret_cast<T*>(shared);
    T* const sKV = sQ + L::q_elements;
    float* const sP = reinterpret_cast<float*>(shared + L::p_offset_bytes);
    float* const sMerge = reinterpret_cast<float*>(sKV);

    const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
    const int g = lane / 4, t = lane % 4;
    const int head_dim = int(p.head_dim);
    const int64_t group = p.heads_q / p.heads_kv;
    // Scores s are raw q·k, or with a softcap or ALiBi the final logits: exp(score_scale·s) = exp2(scale_log2·s).
    const bool transform = has_score_transform(p);
    const ScoreScales scales = score_scales(p);
    const float score_scale = scales.score_scale, scale_log2 = scales.scale_log2, cap_scale = scales.cap_scale;
    const int64_t items = p.batch * p.heads_kv;

    for (int64_t w = blockIdx.x; w < items * split.count; w += gridDim.x) {
        const int part = int(w % split.count);
        const int64_t item = w / split.count;
        const int64_t kv_head = item % p.heads_kv, b = item / p.heads_kv;
        const Sequence seq = sequence(p, b);
        const int rows = int(group * seq.len_q);  // <= kMaxRows: supports()
        if (rows == 0) continue;                  // the whole CTA moves on
        const KeyBand band = key_band(p, seq.len_q, seq.len_k);
        const int64_t alibi = alibi_offset(seq.len_q, seq.len_k);
        // The keys some row sees, [first_key, end_key), cut into split.count ranges of whole blocks.
        const int64_t first_key = max(int64_t{0}, band.first);
        const int64_t end_key = min(seq.len_k, seq.len_q + band.last);
        const int64_t span = max(int64_t{0}, end_key - first_key);
        const int64_t per_part = ((span + split.count - 1) / split.count + kBlockKeys - 1) / kBlockKeys * kBlockKeys;
        const int64_t part_begin = first_key + part * per_part;
        const int64_t part_end = min(end_key, part_begin + per_part);
        const int64_t blocks = part_end > part_begin ? (part_end - part_begin + kBlockKeys - 1) / kBlockKeys : 0;
        const int64_t my_blocks = blocks > warp ? (blocks - warp + L::warps - 1) / L::warps : 0;

        const T* const q = static_cast<const T*>(p.q) + b * p.q_strides.batch + seq.q_start * p.q_strides.seq;
        const T* const k = static_cast<const T*>(p.k) + b * p.k_strides.batch + seq.k_start * p.k_strides.seq +
                           kv_head * p.k_strides.head;
        const T* const v = static_cast<const T*>(p.v) + b * p.v_strides.batch + seq.k_start * p.v_strides.seq +
                           kv_head * p.v_strides.head;

        __syncthreads();  // the previous item's merge is done with shared memory
        for (int e = int(threadIdx.x); e < kMaxRows * kHeadDim; e += L::threads) {
            const int r = e / kHeadDim, d = e % kHeadDim;
            const int64_t i = r / group, head = kv_head * group + r % group;
            sQ[r * L::pitch + d] =
                r < rows && d < head_dim ? q[i * p.q_strides.seq + head * p.q_strides.head + d] : from_float<T>(0.0f);
        }

        // This warp's blocks n = 0, 1, … start at key block_key(n); stage n % stages holds K then V.
        T* const stages = sKV + warp * L::stages * 2 * L::block;
        const auto block_key = [&](int64_t n) { return part_begin + (warp + n * L::warps) * kBlockKeys; };
        // A lane copies one 16-byte column chunk of every kRowsPerPass-th row of a block: its column and its
        // first row are fixed, so each copy costs a pointer step and a bound check.
        constexpr int kRowChunks = kHeadDim / kChunk;
        constexpr int kRowsPerPass = kWarpSize / kRowChunks;
        static_assert(kWarpSize % kRowChunks == 0 && kBlockKeys % kRowsPerPass == 0);
        const int lane_row = lane / kRowChunks, lane_col = lane % kRowChunks * kChunk;
        const bool lane_col_valid = lane_col < head_dim;
        const auto load = [&](int64_t n) {  // an empty group past the end keeps wait_copies' count right
            if (n < my_blocks) {
                T* const dst = stages + n % L::stages * 2 * L::block + lane_row * L::pitch + lane_col;
                const int64_t key = block_key(n) + lane_row;
                const T* k_row = k + key * p.k_strides.seq + lane_col;
                const T* v_row = v + key * p.v_strides.seq + lane_col;
#pragma unroll
                for (int pass = 0; pass < kBlockKeys / kRowsPerPass; ++pass) {
                    const bool valid = lane_col_valid && key + pass * kRowsPerPass < part_end;
                    copy_async(dst + pass * kRowsPerPass * L::pitch, valid ? k_row : k, valid);
                    copy_async(dst + L::block + pass * kRowsPerPass * L::pitch, valid ? v_row : v, valid);
                    k_row += kRowsPerPass * p.k_strides.seq;
                    v_row += kRowsPerPass * p.v_strides.seq;
                }
            }
            commit_copies();
        };
        for (int n = 0; n < L::stages - 1; ++n) load(n);

        // Each half's row: query i, head, ALiBi slope; rows past `rows` see nothing.
        bool row_exists[2];
        int64_t row_query[2];
        float slope[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = g + 8 * h;
            row_exists[h] = r < rows;
            row_query[h] = r / group;
            slope[h] = row_exists[h] && p.alibi_slopes != nullptr ? p.alibi_slopes[kv_head * group + r % group] : 0.0f;
        }

        float o[kOutBlocks][4] = {};                // O·l, unnormalised
        float m[2] = {-INFINITY, -INFINITY};        // running max of the scores
        float l[2] = {};                            // running Σ exp(score_scale·(s − m)) over this lane's keys
        __syncthreads();                            // sQ is written
        for (int64_t n = 0; n < my_blocks; ++n) {
            load(n + L::stages - 1);
            wait_copies<L::stages - 1>();  // block n has landed
            __syncwarp();
            const T* const sK = stages + n % L::stages * 2 * L::block;
            const T* const sV = sK + L::block;
            const int64_t key0 = block_key(n);
            // Each row sees keys first[h] <= j <= last[h] of the block (block-relative; empty for absent rows). A
            // block every row sees whole, with no key past the range, needs no mask.
            int first[2], last[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t upper = min(row_query[h] + band.last, part_end - 1) - key0;
                first[h] = int(min(int64_t{kBlockKeys}, max(int64_t{0}, row_query[h] + band.first - key0)));
                last[h] = row_exists[h] ? int(max(int64_t{-1}, min(int64_t{kBlockKeys - 1}, upper))) : -1;
            }
            const int64_t block_end = min(key0 + kBlockKeys, part_end);
            const bool whole = key0 >= seq.len_q - 1 + band.first && block_end - 1 <= band.last;
            const bool unmasked = whole && block_end == key0 + kBlockKeys;

            // S = Q·Kᵀ  (16 rows × 16 keys: two 8-key N blocks)
            float s[2][4] = {};
#pragma unroll
            for (int d0 = 0; d0 < kHeadDim; d0 += kMmaK) {
                uint32_t a[4], kb[4];
                load_matrices(a, shared_address(sQ + (lane / 8 % 2 * 8 + lane % 8) * L::pitch + d0 + lane / 16 * 8));
                load_matrices(kb, shared_address(sK + (lane / 16 * 8 + lane % 8) * L::pitch + d0 + lane / 8 % 2 * 8));
                mma<T>(s[0], a, kb[0], kb[1]);
                mma<T>(s[1], a, kb[2], kb[3]);
            }

            // s = softcap·tanh(scale·s / softcap) (or scale·s); s −= slope·|i + len_k − len_q − j|; −inf where unseen
#pragma unroll
            for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int h = e / 2, j = nb * 8 + 2 * t + e % 2;
                    if (transform) {
                        const float x = p.softcap > 0.0f ? p.softcap * tanhf(s[nb][e] * cap_scale) : s[nb][e] * p.scale;
                        s[nb][e] = fmaf(-slope[h], float(llabs(row_query[h] + alibi - key0 - j)), x);
                    }
                    if (!unmasked && (j < first[h] || j > last[h])) s[nb][e] = -INFINITY;
                }

            // m_new = max(m, rowmax(S)) over the 4 lanes of a row; P = exp(score_scale·(S − m_new)); l, O rescaled
            // by alpha = exp(score_scale·(m − m_new)), O only when some row's max moved (once it settles, rarely)
            float alpha[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float tile_max = fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1]));
                tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, 1));
                tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullWarp, tile_max, 2));
                const float m_new = fmaxf(m[h], tile_max);
                const float base = (m_new == -INFINITY ? 0.0f : m_new) * scale_log2;  // no key yet: P = 0, not NaN
                alpha[h] = exp2f(fmaf(m[h], scale_log2, -base));
                m[h] = m_new;
                float sum = 0.0f;
#pragma unroll
                for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                    for (int e = 2 * h; e < 2 * h + 2; ++e) {
                        s[nb][e] = exp2f(fmaf(s[nb][e], scale_log2, -base));
                        sum += s[nb][e];
                    }
                l[h] = fmaf(l[h], alpha[h], sum);
            }
            if (__any_sync(kFullWarp, alpha[0] != 1.0f || alpha[1] != 1.0f))
#pragma unroll
                for (int ob = 0; ob < kOutBlocks; ++ob)
#pragma unroll
                    for (int e = 0; e < 4; ++e) o[ob][e] *= alpha[e / 2];

            // O += P·V. Where a row cannot see some key of the block (a band edge), a NaN or Inf in V must not
            // reach it through P = 0: such blocks are scanned, and one that holds any takes the exact-zero path.
            if (whole || !any_nonfinite<T, kHeadDim>(sV, lane)) {
                const uint32_t a[4] = {pack<T>(s[0][0], s[0][1]), pack<T>(s[0][2], s[0][3]), pack<T>(s[1][0], s[1][1]),
                                       pack<T>(s[1][2], s[1][3])};
#pragma unroll
                for (int ob = 0; ob < kOutBlocks; ob += 2) {
                    uint32_t vb[4];
                    load_matrices_transposed(
                        vb, shared_address(sV + (lane / 8 % 2 * 8 + lane % 8) * L::pitch + (ob + lane / 16) * kMmaN));
                    mma<T>(o[ob], a, vb[0], vb[1]);
                    mma<T>(o[ob + 1], a, vb[2], vb[3]);
                }
            } else {
                float* const p_rows = sP + warp * kMaxRows * L::p_pitch;
#pragma unroll
                for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                    for (int e = 0; e < 4; ++e) p_rows[(g + 8 * (e / 2)) * L::p_pitch + nb * 8 + 2 * t + e % 2] = s[nb][e];
                __syncwarp();
#pragma unroll
                for (int h = 0; h < 2; ++h)
                    for (int j = 0; j < kBlockKeys; ++j) {
                        if (j < first[h] || j > last[h]) continue;
                        const float pj = p_rows[(g + 8 * h) * L::p_pitch + j];
#pragma unroll
                        for (int ob = 0; ob < kOutBlocks; ++ob)
#pragma unroll
                            for (int e = 0; e < 2; ++e)
                                o[ob][2 * h + e] = fmaf(pj, to_float(sV[j * L::pitch + ob * kMmaN + 2 * t + e]), o[ob][2 * h + e]);
                    }
            }
            __syncwarp();  // the stage (and P) may be refilled
        }
        wait_copies<0>();

        // l over the row's 4 lanes; then the warps' (m, l, O) merge: O = Σ_w e^(m_w − M)·O_w / Σ_w e^(m_w − M)·l_w
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            l[h] += __shfl_xor_sync(kFullWarp, l[h], 1);
            l[h] += __shfl_xor_sync(kFullWarp, l[h], 2);
        }
        __syncthreads();  // every warp is done with its stages
        float* const merge_o = sMerge;                                    // [warp][row][kHeadDim]
        float* const merge_m = sMerge + L::warps * kMaxRows * kHeadDim;  // [warp][row]
        float* const merge_l = merge_m + L::warps * kMaxRows;
        float* const row_norm = merge_l + L::warps * kMaxRows;  // [row]
        float* const row_lse = row_norm + kMaxRows;             // [row]
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = g + 8 * h;
#pragma unroll
            for (int ob = 0; ob < kOutBlocks; ++ob)
#pragma unroll
                for (int e = 0; e < 2; ++e) merge_o[(warp * kMaxRows + r) * kHeadDim + ob * kMmaN + 2 * t + e] = o[ob][2 * h + e];
            if (t == 0) merge_m[warp * kMaxRows + r] = m[h], merge_l[warp * kMaxRows + r] = l[h];
        }
        __syncthreads();
        // Per row, once: each warp's weight e^(m_w − M) (M the row's max; it replaces m_w), 1 / Σ_w weight·l_w, LSE.
        for (int r = int(threadIdx.x); r < rows; r += L::threads) {
            float top = -INFINITY;
            for (int w2 = 0; w2 < L::warps; ++w2) top = fmaxf(top, merge_m[w2 * kMaxRows + r]);
            float sum = 0.0f;
            for (int w2 = 0; w2 < L::warps; ++w2) {
                float& mw = merge_m[w2 * kMaxRows + r];
                mw = mw == -INFINITY ? 0.0f : exp2f((mw - top) * scale_log2);
                sum = fmaf(mw, merge_l[w2 * kMaxRows + r], sum);
            }
            // A row that saw no key: O = 0, LSE = −inf. One that saw a NaN score: sum = NaN, so O and LSE are NaN.
            const bool saw_keys = sum != 0.0f;
            row_norm[r] = saw_keys ? 1.0f / sum : 0.0f;
            row_lse[r] = saw_keys ? fmaf(score_scale, top, logf(sum)) : -INFINITY;
        }
        __syncthreads();
        for (int e = int(threadIdx.x); e < rows * head_dim; e += L::threads) {
            const int r = e / head_dim, c = e % head_dim;
            float acc = 0.0f;
            for (int w2 = 0; w2 < L::warps; ++w2)
                acc = fmaf(merge_m[w2 * kMaxRows + r], merge_o[(w2 * kMaxRows + r) * kHeadDim + c], acc);
            const float out = row_norm[r] == 0.0f ? 0.0f : acc * row_norm[r];  // no key seen: 0, whatever acc is
            const float lse = row_lse[r];
            const int64_t i = r / group, head = kv_head * group + r % group;
            if (split.count == 1) {
                T* const o_row = static_cast<T*>(p.o) + b * p.o_strides.batch + (seq.q_start + i) * p.o_strides.seq +
                                 head * p.o_strides.head;
                o_row[c] = from_float<T>(out);
                if (c == 0 && p.lse != nullptr) p.lse[lse_index(p, seq, b, head, i)] = lse;
            } else {
                const int64_t slot = (item * split.count + part) * split.rows + r;
                split.partial_o[slot * head_dim + c] = out;
                if (c == 0) split.partial_lse[slot] = lse;
            }
        }
    }
#endif
}

template <typename T, int kHeadDim>
cudaError_t launch_bucket(const Problem& p, const Split& split, cudaStream_t stream) {
    constexpr size_t kShared = Layout<kHeadDim>::shared_bytes;
    const cudaError_t attribute =
        cudaFuncSetAttribute(decode_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kShared));
    if (attribute != cudaSuccess) return attribute;
    const int64_t work = p.batch * p.heads_kv * split.count;
    const unsigned grid = unsigned(work < kMaxGridX ? work : kMaxGridX);
    decode_kernel<T, kHeadDim><<<grid, Layout<kHeadDim>::threads, kShared, stream>>>(p, split);
    return cudaGetLastError();
}

}  // namespace flashsci::kernels::decode
