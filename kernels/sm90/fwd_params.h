// What the host hands the sm_90a forward kernel: sizes, the key band, score transforms, and four TMA maps.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cuda_runtime_api.h>

namespace flashsci::kernels::sm90 {

struct FwdParams {
    int seqlen_q, seqlen_k, heads_q, batch;  // varlen: seqlen_q/k are the longest sequences
    int group;            // heads_q / heads_kv: query head h reads kv head h / group
    // Packed GQA: a tile's rows interleave the `pack` query heads that read one kv head (row r: position
    // r >> pack_shift, head pack·head_pack + r % pack), so each K/V block is loaded once for all of them.
    // pack is the group when that is a power of two up to 64 (and the batch is dense), else 1.
    int pack, pack_shift;
    int head_packs;       // heads_q / pack
    int num_m_blocks;     // ⌈seqlen_q · pack / block_m⌉ (tiles.h)
    int num_tiles;        // num_m_blocks · head_packs · batch
    int section_heads;    // banded: (batch, head pack) pairs per L2 section of the tile order
    int* tile_counter;    // banded or varlen: tiles handed out beyond the first gridDim.x (zeroed before launch)
    // Banded or varlen: 1 + batch·heads_kv flags (zeroed before launch): [1 + b·heads_kv + g] is set where a tile of
    // sequence b, kv head g gets a NaN or an infinity in O, [0] where any does. A masked key's V can put it there
    // (the tensor cores' 0·NaN), so the host follows the kernel with an exact pass over the flagged pairs (sm90.h:
    // redo_flags).
    int* redo;
    int band_first;       // banded, dense: row i sees key j iff i + band_first <= j <= i + diagonal
    int diagonal;
    int mask;             // banded, varlen: Mask, and the window sides (-1: unbounded, else <= 2^30 + 1): each
    int window_left, window_right;  // sequence's band is computed from its own lengths as key_band() does
    float scale_log2;     // softmax scale · log2(e); log2(e) alone when scores are transformed
    float score_scale;    // transformed: the softmax scale, applied by the transform
    float softcap;        // transformed: s = softcap·tanh(s·softcap_inv), softcap_inv = scale / softcap; 0: off
    float softcap_inv;
    const float* alibi_slopes;  // transformed: [heads_q], s −= slope[h]·|i + alibi_offset − j|; null: off
    int alibi_offset;           // dense: seqlen_k − seqlen_q (varlen: the sequence's len_k − len_q)
    float* lse;           // [batch, heads_q, seqlen_q], varlen [heads_q, total_q]; or null
    void* o;              // written directly by tiles whose rows see no key and by varlen halves crossing a sequence end
    int64_t o_batch_stride, o_seq_stride, o_head_stride;
    // Variable-length batches (cu_seqlens_q != null): sequence b owns the packed rows cu_seqlens[b] ..
    // cu_seqlens[b+1] − 1 (clamped into [0, total) on the device); the maps are {head_dim, total, heads, 1}.
    const int* cu_seqlens_q;
    const int* cu_seqlens_k;
    int total_q, total_k;
};

// K, V: 4-D maps {head_dim, seqlen, heads_kv, batch} (varlen {head_dim, total, heads_kv, 1}); Q, O: 5-D maps
// {head_dim, pack, seqlen, heads_q / pack, batch}. Boxes of 64 columns (one 128-byte swizzle span).
struct FwdMaps {
    CUtensorMap q, k, v, o;
};

// The instances tiles.h's has_instance() names, each defined in a .cu of its own that CMake generates
// (cmake/sm90_instances.cmake). Banded: a causal mask or a window limits each row's keys. Transformed: a softcap
// or ALiBi. Wide: the tile table's wide tile of (head_dim, banded).
template <int HeadDim, typename T, bool Banded, bool Transformed, bool Wide = false>
cudaError_t launch_fwd(const FwdParams& p, const FwdMaps& maps, int grid, cudaStream_t stream);

// True when this binary holds the sm_90a body of that instance for the current device.
template <int HeadDim, typename T, bool Banded, bool Transformed, bool Wide = false>
bool fwd_ready();

}  // namespace flashsci::kernels::sm90
