// The general backward's index math: its tile table, which query blocks a key block meets, how key blocks are
// split among CTAs, and where D and the fp32 dQ accumulator sit in the workspace. Host and device code both
// use it (the workspace size is computed on the host, the offsets on the device).
#pragma once

#include <cstddef>
#include <cstdint>

#include "problem.h"

namespace flashsci::kernels::general {

// ---- tile table -------------------------------------------------------------------------------------------------
// Query rows and keys of one backward tile per head-dim bucket. Shared memory holds Q, dO (rows × bucket), K, V
// (keys × bucket) and P, dS (rows × keys) in fp32, padded by one float per row: under 96 KiB for every bucket.
struct BackwardTileShape {
    int head_dim, rows, keys;
};
constexpr BackwardTileShape kBackwardTileShapes[] = {
    {64, 64, 32},
    {128, 32, 32},
    {256, 16, 16},
};
constexpr BackwardTileShape backward_tile_shape(int head_dim) {
    for (const BackwardTileShape& shape : kBackwardTileShapes)
        if (shape.head_dim == head_dim) return shape;
    return {head_dim, 0, 0};
}

// ---- schedule -----------------------------------------------------------------------------------------------------
// A deterministic run gives each of `splits` CTAs per (kv head, sequence) its own fp32 slice of the dQ accumulator;
// the slices cost splits × (dQ in fp32), so their number is capped. Enough CTAs fill the GPU kCtasPerSm deep.
constexpr int64_t kMaxDeterministicSlices = 8;
constexpr int64_t kDeterministicCtasPerSm = 2;
static_assert(kMaxDeterministicSlices >= 1 && kDeterministicCtasPerSm >= 1);

// The workspace's dQ accumulator starts at this alignment (bytes) after D.
constexpr size_t kWorkspaceAlignment = 256;

// The backward's work split and workspace layout for one problem.
struct BackwardSchedule {
    int64_t key_blocks;      // key blocks of the longest sequence: ⌈seqlen_k / keys⌉
    int64_t splits;          // CTAs per (kv head, sequence); split s walks key blocks s, s + splits, ...
    int64_t slices;          // dQ accumulator slices: `splits` when deterministic (slice s is split s's), else 1
    int64_t dq_rows;         // query rows of one slice: total_q (varlen) or batch·seqlen_q
    int64_t row_dot_count;   // entries of D = rowsum(dO∘O), laid out like the LSE
    size_t dq_accum_offset;  // bytes from the workspace's start to the accumulator
    size_t bytes;            // the whole workspace
};

namespace detail {
FLASHSCI_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
FLASHSCI_HOST_DEVICE constexpr int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
FLASHSCI_HOST_DEVICE constexpr int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
}  // namespace detail

// The schedule of p with `keys` keys per block on a GPU of num_sms SMs. It reads no pointer of p.
FLASHSCI_HOST_DEVICE inline BackwardSchedule backward_schedule(const Problem& p, bool deterministic, int num_sms,
                                                               int keys) {
    BackwardSchedule s{};
    s.key_blocks = detail::ceil_div(p.seqlen_k, keys);
    if (deterministic) {
        const int64_t pairs = detail::max64(1, p.batch * p.heads_kv);
        const int64_t ctas = detail::max64(1, num_sms) * kDeterministicCtasPerSm;
        const int64_t most = detail::max64(1, detail::min64(s.key_blocks, kMaxDeterministicSlices));
        s.splits = detail::max64(1, detail::min64(detail::ceil_div(ctas, pairs), most));
        s.slices = s.splits;
    } else {
        s.splits = detail::max64(1, s.key_blocks);
        s.slices = 1;
    }
    s.dq_rows = p.varlen ? p.total_q : p.batch * p.seqlen_q;
    s.row_dot_count = p.varlen ? p.heads_q * p.total_q : p.batch * p.heads_q * p.seqlen_q;
    const size_t row_dot_bytes = size_t(s.row_dot_count) * sizeof(float);
    s.dq_accum_offset = (row_dot_bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
    s.bytes = s.dq_accum_offset + size_t(s.slices * s.dq_rows * p.heads_q * p.head_dim) * sizeof(float);
    return s;
}

// Where element d of row i (of sequence `seq`, batch index b), query head h, sits in slice `slice` of the dQ
// accumulator: [slices][dq_rows][heads_q][head_dim] floats.
FLASHSCI_HOST_DEVICE inline int64_t dq_accum_index(const Problem& p, const BackwardSchedule& s, const Sequence& seq,
                                                   int64_t slice, int64_t b, int64_t h, int64_t i) {
    const int64_t row = p.varlen ? seq.q_start + i : b * p.seqlen_q + i;
    return ((slice * s.dq_rows + row) * p.heads_q + h) * p.head_dim;
}

// Query blocks [first, end) of `rows` rows whose rows see at least one key of the block [k0, k0 + keys) of a
// sequence with len_q queries, len_k keys and key band `band` (row i sees i + band.first <= j <= i + band.last,
// 0 <= j < len_k). Empty (first == end) when no row sees any key of the block.
struct BlockRange {
    int64_t first, end;
};
FLASHSCI_HOST_DEVICE inline BlockRange query_blocks(const KeyBand& band, int64_t k0, int64_t keys, int64_t len_q,
                                                    int64_t len_k, int64_t rows) {
    const int64_t k_last = detail::min64(k0 + keys, len_k) - 1;
    // row i sees key j iff j - band.last <= i <= j - band.first
    const int64_t row_lo = detail::max64(0, k0 - band.last);
    const int64_t row_hi = detail::min64(len_q - 1, k_last - band.first);
    if (band.last < band.first || k_last < k0 || row_hi < row_lo) return {0, 0};
    return {row_lo / rows, row_hi / rows + 1};
}

// Whether every row of the query block [q0, q0 + rows) sees every key of the key block [k0, k0 + keys) (within
// the sequence's len_q rows and len_k keys): then no score of the tile is masked.
FLASHSCI_HOST_DEVICE inline bool tile_inside_band(const KeyBand& band, int64_t q0, int64_t rows, int64_t k0,
                                                  int64_t keys, int64_t len_q, int64_t len_k) {
    const int64_t q_last = detail::min64(q0 + rows, len_q) - 1;
    const int64_t k_last = detail::min64(k0 + keys, len_k) - 1;
    return k_last <= q0 + band.last && k0 >= q_last + band.first;
}

}  // namespace flashsci::kernels::general
