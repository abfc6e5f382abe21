// What the host hands the sm_90a forward kernel: sizes, the key band, score transforms, and four TMA maps.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cuda_runtime_api.h>

namespace flashsci::kernels::sm90 {

struct FwdParams {
    int seqlen_q, seqlen_k, heads_q, batch;
    int group;            // heads_q / heads_kv: query head h reads kv head h / group
    int num_m_blocks;     // ⌈seqlen_q / kBlockM⌉
    int num_tiles;        // num_m_blocks · heads_q · batch
    int section_heads;    // banded: (batch, head) pairs per L2 section of the tile order
    int* tile_counter;    // banded: tiles handed out beyond the first gridDim.x (zeroed before launch)
    int band_first;       // banded: row i sees key j iff i + band_first <= j <= i + diagonal
    int diagonal;
    float scale_log2;     // softmax scale · log2(e); log2(e) alone when scores are transformed
    float score_scale;    // transformed: the softmax scale, applied by the transform
    float softcap;        // transformed: s = softcap·tanh(s·softcap_inv), softcap_inv = scale / softcap; 0: off
    float softcap_inv;
    const float* alibi_slopes;  // transformed: [heads_q], s −= slope[h]·|i + alibi_offset − j|; null: off
    int alibi_offset;           // seqlen_k − seqlen_q
    float* lse;           // [batch, heads_q, seqlen_q] or null
    void* o;              // written directly only by tiles whose rows see no key
    int64_t o_batch_stride, o_seq_stride, o_head_stride;
};

// 4-D maps {head_dim, seqlen, heads, batch}, boxes of 64 columns (one 128-byte swizzle span).
struct FwdMaps {
    CUtensorMap q, k, v, o;
};

// One explicit instance per (head_dim, element, banded, transformed), defined in sm90_hd<D>_<type>.cu.
// Banded: a causal mask or a window limits each row's keys. Transformed: a softcap or ALiBi.
template <int HeadDim, typename T, bool Banded, bool Transformed>
cudaError_t launch_fwd(const FwdParams& p, const FwdMaps& maps, int grid, cudaStream_t stream);

// True when this binary holds the sm_90a body of that instance for the current device.
template <int HeadDim, typename T, bool Banded, bool Transformed>
bool fwd_ready();

}  // namespace flashsci::kernels::sm90
