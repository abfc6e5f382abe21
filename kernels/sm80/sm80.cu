// Host side of the sm_80 forward: what it supports, the tile for the device, the launch.
#include "sm80/sm80.h"

#include <cmath>
#include <cstdint>

#include "sm80/instances.h"
#include "sm80/layout.h"
#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {
namespace {

constexpr int64_t kMaxSeqlen = int64_t{1} << 30;  // row + band + a tile stays far inside int64 and float keys

bool banded(const Problem& p) { return p.mask != Mask::none || p.window_left >= 0 || p.window_right >= 0; }

bool compiled(int bucket) {
    switch (bucket) {
        case 64: return kCompiled<64>;
        case 128: return kCompiled<128>;
        case 256: return kCompiled<256>;
    }
    return false;
}

// The instance of tiles.h's row for (HeadDim, family, T's size), found among the rows at compile time.
template <typename T, int HeadDim, int Row = 0>
cudaError_t launch_row(const Problem& p, Family family, int* redo, cudaStream_t stream) {
    constexpr int kRows = sizeof(kTiles) / sizeof(kTiles[0]);
    if constexpr (Row == kRows) {
        return cudaErrorInvalidValue;
    } else {
        constexpr TileConfig t = kTiles[Row];
        if constexpr (t.head_dim == HeadDim && t.element_bytes == int(sizeof(T)))
            if (t.family == family) return launch_tile<T, HeadDim, t.block_m, t.block_n, t.warps>(p, redo, stream);
        return launch_row<T, HeadDim, Row + 1>(p, family, redo, stream);
    }
}

template <int HeadDim>
cudaError_t launch_bucket(const Problem& p, int* redo, cudaStream_t stream) {
    if constexpr (!kCompiled<HeadDim>) {
        return cudaErrorNotSupported;
    } else {
        const Family family = device_family();
        switch (p.element) {
            case Element::bf16: return launch_row<__nv_bfloat16, HeadDim>(p, family, redo, stream);
            case Element::f16: return launch_row<__half, HeadDim>(p, family, redo, stream);
            case Element::f32: return launch_row<float, HeadDim>(p, family, redo, stream);
        }
        return cudaErrorInvalidValue;
    }
}

}  // namespace

bool supports(const Problem& p, int major) {
    if (major < 8) return false;
    // fp32 on tf32 tensor cores (3xTF32 or one pass); Precision::ieee asks for fp32 FMAs: the general kernel.
    if (p.element == Element::f32 && p.precision == Precision::ieee) return false;
    if (p.head_dim < kHeadDimStep || p.head_dim > kMaxHeadDim || p.head_dim % kHeadDimStep != 0) return false;
    if (!compiled(head_dim_bucket(p.head_dim))) return false;
    if (p.batch < 1 || p.heads_kv < 1 || p.heads_q % p.heads_kv != 0) return false;
    if (p.seqlen_q < 1 || p.seqlen_k < 1 || p.seqlen_q > kMaxSeqlen || p.seqlen_k > kMaxSeqlen) return false;
    if (p.varlen && (p.total_q > kMaxSeqlen || p.total_k > kMaxSeqlen)) return false;
    if (!(p.scale > 0.f) || !std::isfinite(p.scale)) return false;  // the running max assumes a positive scale
    if (!aligned(p.q) || !aligned(p.k) || !aligned(p.v) || !aligned(p.o)) return false;
    const int64_t rows_q = p.varlen ? p.total_q : p.seqlen_q, rows_k = p.varlen ? p.total_k : p.seqlen_k;
    const int64_t elems = kChunkBytes / element_bytes(p.element);
    return chunk_strides(p.q_strides, rows_q, p.heads_q, p.batch, elems) &&
           chunk_strides(p.o_strides, rows_q, p.heads_q, p.batch, elems) &&
           chunk_strides(p.k_strides, rows_k, p.heads_kv, p.batch, elems) &&
           chunk_strides(p.v_strides, rows_k, p.heads_kv, p.batch, elems);
}

const char* requirements() {
    return "compute capability 8.0+, fp16/bf16, or fp32 with a precision other than IEEE, head_dim a multiple of 8 up "
           "to 256 in a bucket this build holds (FLASHSCI_SM80_HEAD_DIMS), q, k, v and o 16-byte aligned with strides "
           "in whole 16 bytes (multiples of 8 fp16/bf16 or 4 fp32 elements), sequence lengths under 2^30 and a "
           "positive scale";
}

size_t workspace_bytes(const Problem& p) { return banded(p) ? sizeof(int) * size_t(1 + p.batch * p.heads_kv) : 0; }

int* redo_flags(const Problem& p, void* workspace) { return banded(p) ? static_cast<int*>(workspace) : nullptr; }

const char* kernel_name(const Problem& p) {
    // [bucket][bf16, f16, f32 3xTF32, f32 TF32]
    static constexpr const char* kNames[3][4] = {
        {"sm80_hd64_bf16", "sm80_hd64_f16", "sm80_hd64_f32_3xtf32", "sm80_hd64_f32_tf32"},
        {"sm80_hd128_bf16", "sm80_hd128_f16", "sm80_hd128_f32_3xtf32", "sm80_hd128_f32_tf32"},
        {"sm80_hd256_bf16", "sm80_hd256_f16", "sm80_hd256_f32_3xtf32", "sm80_hd256_f32_tf32"}};
    const int bucket = head_dim_bucket(p.head_dim);
    const int b = bucket == 64 ? 0 : bucket == 128 ? 1 : 2;
    const int e = p.element == Element::bf16 ? 0 : p.element == Element::f16 ? 1 : p.precision == Precision::tf32 ? 3 : 2;
    return kNames[b][e];
}

cudaError_t launch(const Problem& p, void* workspace, cudaStream_t stream) {
    int* const redo = redo_flags(p, workspace);
    if (redo != nullptr)
        if (const cudaError_t e = cudaMemsetAsync(redo, 0, workspace_bytes(p), stream); e != cudaSuccess) return e;
    switch (head_dim_bucket(p.head_dim)) {
        case 64: return launch_bucket<64>(p, redo, stream);
        case 128: return launch_bucket<128>(p, redo, stream);
        case 256: return launch_bucket<256>(p, redo, stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace flashsci::kernels::sm80
