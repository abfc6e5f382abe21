// The decoding path's host side: support, how many CTAs split each item's keys, the merge of their partials.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/device.cuh"
#include "decode/decode.cuh"
#include "decode/decode.h"

namespace flashsci::kernels::decode {
namespace {

constexpr int kAlignment = 16;         // bytes: cp.async moves 16-byte chunks of k and v rows
constexpr int kChunkElements = 8;      // 2-byte elements per chunk
constexpr int64_t kMinSplitKeys = 256;  // fewer keys per split would spend more on the merge than it saves
constexpr int kMaxSplits = 64;
constexpr int kMergeThreads = 128;

int bucket(int64_t head_dim) {
    for (const int b : kHeadDimBuckets)
        if (head_dim <= b) return b;
    return 0;
}

__host__ __device__ int64_t group(const Problem& p) { return p.heads_q / p.heads_kv; }
__host__ __device__ int64_t items(const Problem& p) { return p.batch * p.heads_kv; }
// Rows per item in the partial buffers: the longest sequence's.
int rows_per_item(const Problem& p) { return int(group(p) * p.seqlen_q); }

bool aligned(const void* x) { return reinterpret_cast<uintptr_t>(x) % kAlignment == 0; }
bool whole_chunks(const Strides& s) {
    return s.batch % kChunkElements == 0 && s.seq % kChunkElements == 0 && s.head % kChunkElements == 0;
}

// As many CTAs as the GPU holds at once (one wave: a second, partial one would double the time), each with at
// least kMinSplitKeys keys; 1 when the items alone fill the GPU.
int split_count(const Problem& p, int num_sms) {
    const int64_t wanted = int64_t{pipeline(bucket(p.head_dim)).resident} * num_sms / items(p);
    const int64_t affordable = std::max<int64_t>(1, p.seqlen_k / kMinSplitKeys);
    return int(std::clamp<int64_t>(std::min(wanted, affordable), 1, kMaxSplits));
}

// O = Σ_s e^(LSE_s − LSE)·O_s with LSE = log Σ_s e^(LSE_s): one CTA per (item, row), threads over head_dim.
// Splits that saw no key have LSE_s = −inf and O_s = 0; a row no split saw gets O = 0, LSE = −inf.
template <typename T>
__global__ void __launch_bounds__(kMergeThreads) merge_splits(const Problem p, const Split split) {
    __shared__ float weight[kMaxSplits];  // LSE_s, then e^(LSE_s − LSE)
    __shared__ float row_lse;
    const int lane = int(threadIdx.x) % kWarpSize;
    const int64_t rows = items(p) * split.rows;
    for (int64_t w = blockIdx.x; w < rows; w += gridDim.x) {
        __syncthreads();  // the previous row's weights and LSE are read
        const int64_t item = w / split.rows;
        const int r = int(w % split.rows);
        const int64_t kv_head = item % p.heads_kv, b = item / p.heads_kv;
        const Sequence seq = sequence(p, b);
        if (r >= group(p) * seq.len_q) continue;
        const float* const lse_of = split.partial_lse + item * split.count * split.rows + r;  // split s at s·rows
        if (threadIdx.x < kWarpSize) {  // one warp reduces the splits' LSEs
            // The largest LSE_s, or NaN if any is: then LSE and O are NaN.
            const auto nan_max = [](float a, float b) { return isnan(a) || isnan(b) ? NAN : fmaxf(a, b); };
            float top = -INFINITY;
            for (int s = lane; s < split.count; s += kWarpSize) {
                weight[s] = lse_of[s * split.rows];
                top = nan_max(top, weight[s]);
            }
            for (int d = kWarpSize / 2; d > 0; d /= 2) top = nan_max(top, __shfl_xor_sync(kFullWarp, top, d));
            float sum = 0.0f;
            if (top != -INFINITY)
                for (int s = lane; s < split.count; s += kWarpSize) sum += expf(weight[s] - top);
            for (int d = kWarpSize / 2; d > 0; d /= 2) sum += __shfl_xor_sync(kFullWarp, sum, d);
            const float lse = top == -INFINITY ? -INFINITY : top + logf(sum);
            for (int s = lane; s < split.count; s += kWarpSize) weight[s] = expf(weight[s] - lse);
            if (lane == 0) row_lse = lse;
        }
        __syncthreads();
        const float lse = row_lse;
        const int64_t i = r / group(p), head = kv_head * group(p) + r % group(p);
        T* const o = static_cast<T*>(p.o) + b * p.o_strides.batch + (seq.q_start + i) * p.o_strides.seq +
                     head * p.o_strides.head;
        // Split s's O of this row at s·rows·head_dim.
        const float* const partial = split.partial_o + (item * split.count * split.rows + r) * p.head_dim;
        for (int c = int(threadIdx.x); c < p.head_dim; c += kMergeThreads) {
            float acc = 0.0f;
            if (lse != -INFINITY)
                for (int s = 0; s < split.count; ++s)
                    acc = fmaf(weight[s], partial[s * split.rows * p.head_dim + c], acc);
            o[c] = from_float<T>(acc);
        }
        if (threadIdx.x == 0 && p.lse != nullptr) p.lse[lse_index(p, seq, b, head, i)] = lse;
    }
}

template <typename T>
cudaError_t launch_element(const Problem& p, const Split& split, cudaStream_t stream) {
    cudaError_t e = cudaSuccess;
    switch (bucket(p.head_dim)) {
        case kHeadDimBuckets[0]: e = launch_bucket<T, kHeadDimBuckets[0]>(p, split, stream); break;
        case kHeadDimBuckets[1]: e = launch_bucket<T, kHeadDimBuckets[1]>(p, split, stream); break;
        default: e = launch_bucket<T, kHeadDimBuckets[2]>(p, split, stream); break;
    }
    if (e != cudaSuccess || split.count == 1) return e;
    const int64_t rows = items(p) * split.rows;
    merge_splits<T><<<unsigned(std::min(rows, kMaxGridX)), kMergeThreads, 0, stream>>>(p, split);
    return cudaGetLastError();
}

}  // namespace

bool supports(const Problem& p, int major) {
    constexpr int kMinMajor = 8;  // mma.sync on bf16, cp.async
    if (major < kMinMajor || p.element == Element::f32) return false;
    if (bucket(p.head_dim) == 0 || p.head_dim % kChunkElements != 0) return false;
    if (group(p) * p.seqlen_q > kMaxRows) return false;
    return aligned(p.k) && aligned(p.v) && whole_chunks(p.k_strides) && whole_chunks(p.v_strides);
}

bool preferred(const Problem& p, int num_sms) { return items(p) < num_sms / 2; }

size_t workspace_bytes(const Problem& p, int num_sms) {
    const int count = split_count(p, num_sms);
    if (count == 1) return 0;
    return size_t(items(p)) * count * rows_per_item(p) * (size_t(p.head_dim) + 1) * sizeof(float);
}

const char* kernel_name(const Problem& p) {
    static constexpr const char* kNames[2][3] = {
        {"cuda_decode_hd64_f16", "cuda_decode_hd128_f16", "cuda_decode_hd256_f16"},
        {"cuda_decode_hd64_bf16", "cuda_decode_hd128_bf16", "cuda_decode_hd256_bf16"}};
    const int b = bucket(p.head_dim);
    const int index = b == kHeadDimBuckets[0] ? 0 : b == kHeadDimBuckets[1] ? 1 : 2;
    return kNames[p.element == Element::bf16][index];
}

cudaError_t launch(const Problem& p, void* workspace, int num_sms, cudaStream_t stream) {
    Split split{split_count(p, num_sms), rows_per_item(p), nullptr, nullptr};
    if (split.count > 1) {
        split.partial_o = static_cast<float*>(workspace);
        split.partial_lse = split.partial_o + size_t(items(p)) * split.count * split.rows * p.head_dim;
    }
    return p.element == Element::bf16 ? launch_element<__nv_bfloat16>(p, split, stream)
                                      : launch_element<__half>(p, split, stream);
}

}  // namespace flashsci::kernels::decode
