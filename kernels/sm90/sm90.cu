// Host side of the sm_90a forward: what it supports, its TMA maps, and the launch.
#include "sm90/sm90.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <iterator>
#include <string>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "sm90/instances.h"
#include "sm90/tiles.h"

namespace flashsci::kernels::sm90 {
namespace {

constexpr int kElemBytes = 2;
constexpr int64_t kTmaAlignment = 16;            // global address and stride granularity of TMA
constexpr int64_t kTmaStrideLimit = int64_t{1} << 40;
constexpr int64_t kMaxSeqlen = int64_t{1} << 29;  // row + diagonal + a tile stays in int
constexpr float kLog2e = 1.4426950408889634f;
constexpr int64_t kL2SectionBytes = 32 << 20;  // K+V of one causal tile section, about 2/3 of the H100's L2

// cuTensorMapEncodeTiled from the driver, found at run time (the library never links libcuda).
PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* f = nullptr;
        cudaDriverEntryPointQueryResult found{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found) !=
                cudaSuccess ||
            found != cudaDriverEntryPointSuccess)
            return PFN_cuTensorMapEncodeTiled_v12000{};
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

bool aligned(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % kTmaAlignment == 0; }

// A stride TMA can take: 16-byte multiple under 2^40 bytes (free when the dimension has one entry).
bool tma_stride(int64_t stride, int64_t extent) {
    const int64_t bytes = stride * kElemBytes;
    return extent == 1 || (bytes > 0 && bytes % kTmaAlignment == 0 && bytes < kTmaStrideLimit);
}

bool tma_strides(const Strides& s, int64_t seqlen, int64_t heads, int64_t batch) {
    return tma_stride(s.seq, seqlen) && tma_stride(s.head, heads) && tma_stride(s.batch, batch);
}

// A byte stride for TMA (any 16-byte multiple where the dimension has one entry).
cuuint64_t map_stride(int64_t elems, int64_t extent) { return cuuint64_t(extent == 1 ? kTmaAlignment : elems * kElemBytes); }

template <int Rank>
cudaError_t encode_map(CUtensorMap* map, Element e, const void* ptr, const cuuint64_t (&dims)[Rank],
                       const cuuint64_t (&strides)[Rank - 1], const cuuint32_t (&box)[Rank]) {
    const auto encode = encode_tiled();
    if (!encode) return cudaErrorNotSupported;
    cuuint32_t unit[Rank];
    std::fill(unit, unit + Rank, 1u);
    const CUresult r = encode(map, e == Element::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                              Rank, const_cast<void*>(ptr), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                              CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// K, V: {head_dim, seqlen, heads, batch} over a [batch, seqlen, heads, head_dim] tensor, box 64 × box_rows.
cudaError_t make_kv_map(CUtensorMap* map, Element e, const void* ptr, int64_t head_dim, int64_t seqlen, int64_t heads,
                        int64_t batch, const Strides& s, int box_rows) {
    const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t(seqlen), cuuint64_t(heads), cuuint64_t(batch)};
    const cuuint64_t strides[3] = {map_stride(s.seq, seqlen), map_stride(s.head, heads), map_stride(s.batch, batch)};
    const cuuint32_t box[4] = {cuuint32_t(kSlabElems), cuuint32_t(box_rows), 1, 1};
    return encode_map(map, e, ptr, dims, strides, box);
}

// Q, O: {head_dim, pack, seqlen, heads / pack, batch}, box 64 × pack × kMmaM / pack: one consumer's rows, the
// pack's heads interleaved position by position.
cudaError_t make_row_map(CUtensorMap* map, Element e, const void* ptr, int64_t head_dim, int64_t seqlen, int64_t heads,
                         int64_t batch, const Strides& s, int pack) {
    const cuuint64_t dims[5] = {cuuint64_t(head_dim), cuuint64_t(pack), cuuint64_t(seqlen), cuuint64_t(heads / pack),
                                cuuint64_t(batch)};
    const cuuint64_t strides[4] = {map_stride(s.head, pack), map_stride(s.seq, seqlen),
                                   map_stride(s.head * pack, heads / pack), map_stride(s.batch, batch)};
    const cuuint32_t box[5] = {cuuint32_t(kSlabElems), cuuint32_t(pack), cuuint32_t(kMmaM / pack), 1, 1};
    return encode_map(map, e, ptr, dims, strides, box);
}

bool causal(const Problem& p) { return p.mask != Mask::none; }
bool windowed(const Problem& p) { return p.window_left >= 0 || p.window_right >= 0; }
// Banded instances visit only each tile's band of key blocks; transformed ones (has_score_transform) rewrite the scores.
bool banded(const Problem& p) { return causal(p) || windowed(p); }
// Banded and varlen tiles differ in length: a counter in the workspace hands them out (fwd_kernel.cuh).
bool dynamic_tiles(const Problem& p) { return banded(p) || p.varlen; }
// The wide tile (tiles.h): untransformed problems of a (head_dim, banded) that has one, unbanded or causal without a
// window; all unbanded ones where it replaces the usual plain tile, else dense ones from its wide_from_keys keys.
bool wide_tile(const Problem& p) {
    const int head_dim = int(p.head_dim);
    const bool band = banded(p);
    if (!has_wide_tile(head_dim, band) || windowed(p) || has_score_transform(p)) return false;
    return p.varlen ? wide_takes_varlen(head_dim, band) : p.seqlen_k >= tile_config(head_dim, band, true).wide_from_keys;
}

// Whether (head_dim, banded) has a usual untransformed instance (not where the wide tile replaces it).
template <int HeadDim, bool Banded>
constexpr bool kHasPlain = Banded || !wide_replaces_plain(HeadDim);

// Query rows per tile of the tile that runs p.
int64_t tile_rows(const Problem& p) { return block_m(int(p.head_dim), banded(p), wide_tile(p)); }

// The head dims with a tile (tiles.h); the position in kHeadDims, or -1.
constexpr int kHeadDims[] = {64, 96, 128, 192, 256};
int head_dim_index(int64_t head_dim) {
    for (int i = 0; i < int(std::size(kHeadDims)); ++i)
        if (kHeadDims[i] == head_dim) return i;
    return -1;
}

// Packed GQA (fwd_params.h): the query heads of a group share each tile when that takes fewer tiles than a tile
// per head (short query sequences: decoding, prefill chunks, ragged lengths), the group is a power of two that
// divides a consumer's kMmaM rows, the batch is dense and no ALiBi slope tells the heads apart; else 1 (a tile
// holds one head). Longer sequences stay unpacked: the heads of a group run side by side and share K/V through
// L2, which is faster than packed tiles there (docs/sm90-kernel.md).
int64_t gqa_pack(const Problem& p) {
    const int64_t group = p.heads_q / p.heads_kv;
    const bool fits = group > 1 && (group & (group - 1)) == 0 && kMmaM % group == 0 && !p.varlen && !p.alibi_slopes &&
                      p.seqlen_q * group <= kMaxSeqlen && tma_stride(p.q_strides.head * group, p.heads_q / group) &&
                      tma_stride(p.o_strides.head * group, p.heads_q / group);
    const int64_t rows = tile_rows(p);
    const bool saves_tiles = (p.seqlen_q * group + rows - 1) / rows < group * ((p.seqlen_q + rows - 1) / rows);
    return fits && saves_tiles ? group : 1;
}

int64_t num_m_blocks(const Problem& p) {
    const int64_t rows = tile_rows(p);
    return (p.seqlen_q * gqa_pack(p) + rows - 1) / rows;
}
int64_t num_tiles(const Problem& p) { return num_m_blocks(p) * (p.heads_q / gqa_pack(p)) * p.batch; }

// The extents the TMA maps walk: {rows, batch}; a varlen batch is one packed "sequence" of total rows.
int64_t map_rows_q(const Problem& p) { return p.varlen ? p.total_q : p.seqlen_q; }
int64_t map_rows_k(const Problem& p) { return p.varlen ? p.total_k : p.seqlen_k; }
int64_t map_batch(const Problem& p) { return p.varlen ? 1 : p.batch; }

// Head dims whose instances this build holds (CMake's FLASHSCI_SM90_HEAD_DIMS defines FLASHSCI_SM90_HD<d>).
template <int HeadDim>
constexpr bool kCompiled = false;
#ifdef FLASHSCI_SM90_HD64
template <>
constexpr bool kCompiled<64> = true;
#endif
#ifdef FLASHSCI_SM90_HD96
template <>
constexpr bool kCompiled<96> = true;
#endif
#ifdef FLASHSCI_SM90_HD128
template <>
constexpr bool kCompiled<128> = true;
#endif
#ifdef FLASHSCI_SM90_HD192
template <>
constexpr bool kCompiled<192> = true;
#endif
#ifdef FLASHSCI_SM90_HD256
template <>
constexpr bool kCompiled<256> = true;
#endif

// An instance of the sm_90a forward (fwd_params.h), as compile-time settings.
template <bool BandedV, bool TransformedV, bool WideV>
struct Instance {
    static constexpr bool banded = BandedV, transformed = TransformedV, wide = WideV;
};

// The instance that runs p, handed to f: the wide tile where wide_tile(p), else the usual one, transformed or not.
// The one decision behind readiness and launch alike.
template <int HeadDim, bool Banded, typename F>
auto with_banded_instance(const Problem& p, F&& f) {
    if constexpr (has_wide_tile(HeadDim, Banded))
        if (wide_tile(p)) return f(Instance<Banded, false, true>{});
    if constexpr (kHasPlain<HeadDim, Banded>)
        if (!has_score_transform(p)) return f(Instance<Banded, false, false>{});
    return f(Instance<Banded, true, false>{});
}

template <int HeadDim, typename F>
auto with_instance(const Problem& p, F&& f) {
    return banded(p) ? with_banded_instance<HeadDim, true>(p, f) : with_banded_instance<HeadDim, false>(p, f);
}

template <int HeadDim, typename T>
bool ready(const Problem& p) {
    return with_instance<HeadDim>(p, [](auto instance) {
        using I = decltype(instance);
        return fwd_ready<HeadDim, T, I::banded, I::transformed, I::wide>();
    });
}

template <int HeadDim>
bool ready_hd(const Problem& p) {
    if constexpr (!kCompiled<HeadDim>) return false;
    return p.element == Element::bf16 ? ready<HeadDim, __nv_bfloat16>(p) : ready<HeadDim, __half>(p);
}

template <int HeadDim, bool Banded, bool Transformed, bool Wide>
cudaError_t launch_hd(const Problem& p, void* workspace, int num_sms, cudaStream_t stream) {
    constexpr int kN = TileShape<HeadDim, Banded, Wide>::block_n;
    FwdMaps maps;
    const int64_t rows_q = map_rows_q(p), rows_k = map_rows_k(p), batch = map_batch(p);
    const int pack = int(gqa_pack(p));
    cudaError_t e = make_row_map(&maps.q, p.element, p.q, p.head_dim, rows_q, p.heads_q, batch, p.q_strides, pack);
    if (e == cudaSuccess) e = make_kv_map(&maps.k, p.element, p.k, p.head_dim, rows_k, p.heads_kv, batch, p.k_strides, kN);
    if (e == cudaSuccess) e = make_kv_map(&maps.v, p.element, p.v, p.head_dim, rows_k, p.heads_kv, batch, p.v_strides, kN);
    if (e == cudaSuccess) e = make_row_map(&maps.o, p.element, p.o, p.head_dim, rows_q, p.heads_q, batch, p.o_strides, pack);
    if (e != cudaSuccess) return e;

    FwdParams f{};
    f.seqlen_q = int(p.seqlen_q);
    f.seqlen_k = int(p.seqlen_k);
    f.heads_q = int(p.heads_q);
    f.batch = int(p.batch);
    f.group = int(p.heads_q / p.heads_kv);
    f.pack = pack;
    while (1 << f.pack_shift < pack) ++f.pack_shift;
    f.head_packs = int(p.heads_q / pack);
    f.num_m_blocks = int(num_m_blocks(p));
    f.num_tiles = int(num_tiles(p));
    // Banded: head packs whose K and V fit together in kL2SectionBytes (query heads of one group share theirs).
    const int64_t kv_bytes_per_pack = 2 * p.seqlen_k * p.head_dim * kElemBytes * p.heads_kv / f.head_packs;
    f.section_heads = int(std::clamp<int64_t>(kL2SectionBytes / std::max<int64_t>(kv_bytes_per_pack, 1), 1,
                                              int64_t{f.head_packs} * p.batch));
    f.tile_counter = static_cast<int*>(workspace);
    f.redo = redo_flags(p, workspace);
    const KeyBand band = key_band(p);  // |first|, |last| <= seqlen_q + seqlen_k <= 2^30
    f.band_first = Banded ? int(band.first) : 0;
    f.diagonal = Banded ? int(band.last) : 0;
    // Varlen: each sequence's band from its own lengths (a window side past 2^30 + 1 bounds nothing either way).
    constexpr int64_t kWideWindow = (int64_t{1} << 30) + 1;
    f.mask = int(p.mask);
    f.window_left = p.window_left < 0 ? -1 : int(std::min(p.window_left, kWideWindow));
    f.window_right = p.window_right < 0 ? -1 : int(std::min(p.window_right, kWideWindow));
    // Transformed scores carry the scale themselves; the softmax then only converts to base 2.
    f.scale_log2 = Transformed ? kLog2e : p.scale * kLog2e;
    f.score_scale = p.scale;
    f.softcap = p.softcap;
    f.softcap_inv = p.softcap > 0.f ? p.scale / p.softcap : 0.f;
    f.alibi_slopes = p.alibi_slopes;
    f.alibi_offset = int(p.seqlen_k - p.seqlen_q);
    f.lse = p.lse;
    f.o = p.o;
    f.o_batch_stride = p.o_strides.batch;
    f.o_seq_stride = p.o_strides.seq;
    f.o_head_stride = p.o_strides.head;
    f.cu_seqlens_q = p.varlen ? p.cu_seqlens_q : nullptr;
    f.cu_seqlens_k = p.varlen ? p.cu_seqlens_k : nullptr;
    f.total_q = p.varlen ? int(p.total_q) : 0;
    f.total_k = p.varlen ? int(p.total_k) : 0;
    const int grid = std::max(1, std::min(f.num_tiles, num_sms));

    if (dynamic_tiles(p)) {
        if (cudaError_t e = cudaMemsetAsync(workspace, 0, workspace_bytes(p), stream); e != cudaSuccess) return e;
    }
    return p.element == Element::bf16 ? launch_fwd<HeadDim, __nv_bfloat16, Banded, Transformed, Wide>(f, maps, grid, stream)
                                      : launch_fwd<HeadDim, __half, Banded, Transformed, Wide>(f, maps, grid, stream);
}

template <int HeadDim>
cudaError_t launch_hd(const Problem& p, void* workspace, int num_sms, cudaStream_t stream) {
    if constexpr (!kCompiled<HeadDim>) return cudaErrorNotSupported;
    return with_instance<HeadDim>(p, [&](auto instance) {
        using I = decltype(instance);
        return launch_hd<HeadDim, I::banded, I::transformed, I::wide>(p, workspace, num_sms, stream);
    });
}

}  // namespace

bool supports(const Problem& p, int major, int minor) {
    if (major != 9 || minor != 0) return false;
    if (p.element != Element::bf16 && p.element != Element::f16) return false;
    if (head_dim_index(p.head_dim) < 0) return false;
    if (p.batch < 1 || p.heads_kv < 1 || p.heads_q % p.heads_kv != 0) return false;
    if (p.seqlen_q < 1 || p.seqlen_k < 1 || p.seqlen_q > kMaxSeqlen || p.seqlen_k > kMaxSeqlen) return false;
    // Varlen: packed rows (offset + row + a tile) stay in int. (The offsets themselves are checked by the
    // forward; a plan asked for its kernel name has none yet.)
    if (p.varlen && (p.total_q < 1 || p.total_k < 1 || p.total_q > kMaxSeqlen || p.total_k > kMaxSeqlen))
        return false;
    if (num_tiles(p) > INT_MAX) return false;
    if (!(p.scale > 0.f) || !std::isfinite(p.scale)) return false;  // the running max assumes a positive scale
    if (!aligned(p.q) || !aligned(p.k) || !aligned(p.v) || !aligned(p.o)) return false;
    if (!tma_strides(p.q_strides, map_rows_q(p), p.heads_q, map_batch(p)) ||
        !tma_strides(p.o_strides, map_rows_q(p), p.heads_q, map_batch(p)) ||
        !tma_strides(p.k_strides, map_rows_k(p), p.heads_kv, map_batch(p)) ||
        !tma_strides(p.v_strides, map_rows_k(p), p.heads_kv, map_batch(p)))
        return false;
    if (!encode_tiled()) return false;
    switch (p.head_dim) {
        case 64: return ready_hd<64>(p);
        case 96: return ready_hd<96>(p);
        case 128: return ready_hd<128>(p);
        case 192: return ready_hd<192>(p);
        default: return ready_hd<256>(p);
    }
}

// The tile counter, then the redo flags of the guarded (banded or varlen) kernels (FwdParams::redo).
size_t workspace_bytes(const Problem& p) { return dynamic_tiles(p) ? sizeof(int) * size_t(2 + p.batch * p.heads_kv) : 0; }

int* redo_flags(const Problem& p, void* workspace) { return dynamic_tiles(p) ? static_cast<int*>(workspace) + 1 : nullptr; }

const char* kernel_name(const Problem& p) {
    // sm90_hd<d>_<type>[_causal][_window][_softcap][_alibi][_wide]: every combination, built once (the wide tile
    // only ever goes with none of the others but _causal).
    constexpr int kCombinations = std::size(kHeadDims) * 2 * 2 * 2 * 2 * 2 * 2;
    static const std::array<std::string, kCombinations> names = [&] {
        std::array<std::string, kCombinations> all;
        for (int i = 0; i < kCombinations; ++i)
            all[i] = "sm90_hd" + std::to_string(kHeadDims[i >> 6]) + ((i & 32) ? "_bf16" : "_f16") +
                     ((i & 16) ? "_causal" : "") + ((i & 8) ? "_window" : "") + ((i & 4) ? "_softcap" : "") +
                     ((i & 2) ? "_alibi" : "") + ((i & 1) ? "_wide" : "");
        return all;
    }();
    const int i = head_dim_index(p.head_dim) << 6 | (p.element == Element::bf16) << 5 | causal(p) << 4 | windowed(p) << 3 |
                  (p.softcap > 0.f) << 2 | (p.alibi_slopes != nullptr) << 1 | wide_tile(p);
    return names[i].c_str();
}

cudaError_t launch(const Problem& p, void* workspace, int num_sms, cudaStream_t stream) {
    switch (p.head_dim) {
        case 64: return launch_hd<64>(p, workspace, num_sms, stream);
        case 96: return launch_hd<96>(p, workspace, num_sms, stream);
        case 128: return launch_hd<128>(p, workspace, num_sms, stream);
        case 192: return launch_hd<192>(p, workspace, num_sms, stream);
        default: return launch_hd<256>(p, workspace, num_sms, stream);
    }
}

}  // namespace flashsci::kernels::sm90
