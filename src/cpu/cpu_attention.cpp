// The CPU backend. Work is split into (sequence, query head, block of query rows) items that
// threads take from one atomic counter. Each item walks the keys in tiles: a tile of K and V
// is converted to the accumulator type once and then serves every row of the block, which
// keeps an online softmax (running max m, running sum l, output accumulator) per row.
#include "cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/element_format.h"
#include "cpu/parallel.h"

namespace flashsci::cpu {
namespace {

using kernels::Element;
using kernels::Problem;
using kernels::Strides;

// Query rows per work item: the cost of converting a K/V tile is shared by this many rows.
constexpr int64_t kRowsPerBlock = 32;
// Keys per tile: K and V tiles of 64 keys × 256 dims in fp64 (256 KiB) stay in L2.
constexpr int64_t kKeysPerTile = 64;
// Rows of the scratch buffers are padded to a multiple of this many values, zero-filled,
// so the inner loops over head_dim have a trip count the compiler can vectorise without a tail.
constexpr int64_t kDimPadding = 8;

// The three inner loops, as free functions whose __restrict__ parameters let GCC vectorise
// them even at -O2 (it ignores __restrict__ on local pointers); their trip counts are
// multiples of the vector width, so no scalar tail is needed.

// s[j] += q_d · k_d[j] for a whole tile of keys; entries past the tile's last key are never read.
template <class Acc>
void add_key_products(Acc* __restrict__ s, const Acc* __restrict__ k_d, Acc q_d) {
    for (int64_t j = 0; j < kKeysPerTile; ++j) s[j] += q_d * k_d[j];
}

// o += p · v over a row padded to kDimPadding.
template <class Acc>
void add_scaled_row(Acc* __restrict__ o, const Acc* __restrict__ v, Acc p, int64_t padded_dims) {
    for (int64_t c = 0; c < padded_dims; c += kDimPadding)
        for (int64_t e = 0; e < kDimPadding; ++e) o[c + e] += p * v[c + e];
}

// o *= factor over a row padded to kDimPadding.
template <class Acc>
void scale_row(Acc* o, Acc factor, int64_t padded_dims) {
    for (int64_t c = 0; c < padded_dims; c += kDimPadding)
        for (int64_t e = 0; e < kDimPadding; ++e) o[c + e] *= factor;
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

int64_t offset(const Strides& s, int64_t batch, int64_t row, int64_t head) {
    return batch * s.batch + row * s.seq + head * s.head;
}

// One work item: rows [first_row, first_row + rows) of query head `head` in sequence `batch` (rows <= 0: the
// block lies past the end of a shorter sequence of a variable-length batch, nothing to do).
struct RowBlock {
    int64_t batch, head, kv_head, first_row, rows;
    kernels::Sequence seq;
};

RowBlock row_block(const Problem& p, int64_t item) {
    const int64_t blocks_per_head = (p.seqlen_q + kRowsPerBlock - 1) / kRowsPerBlock;
    const int64_t block = item % blocks_per_head;
    const int64_t head = (item / blocks_per_head) % p.heads_q;
    const int64_t batch = item / blocks_per_head / p.heads_q;
    const int64_t first_row = block * kRowsPerBlock;
    const int64_t query_heads_per_kv_head = p.heads_q / p.heads_kv;
    const kernels::Sequence seq = kernels::sequence(p, batch);
    return {batch, head, head / query_heads_per_kv_head, first_row, std::min(kRowsPerBlock, seq.len_q - first_row),
            seq};
}

// Blocks over the longest sequence (seqlen_q is max_seqlen_q for a variable-length batch).
int64_t row_block_count(const Problem& p) {
    return p.batch * p.heads_q * ((p.seqlen_q + kRowsPerBlock - 1) / kRowsPerBlock);
}

// A thread's scratch and the attention of one row block at a time.
template <Element E>
class RowBlockAttention {
    using Stored = typename Format<E>::Stored;
    using Acc = typename Format<E>::Acc;

public:
    explicit RowBlockAttention(const Problem& p)
        : p_(p),
          dims_(round_up(p.head_dim, kDimPadding)),
          queries_(size_t(kRowsPerBlock * dims_)),
          keys_transposed_(size_t(dims_ * kKeysPerTile)),
          values_(size_t(kKeysPerTile * dims_)),
          scores_(size_t(kRowsPerBlock * kKeysPerTile)),
          out_(size_t(kRowsPerBlock * dims_)),
          row_max_(size_t(kRowsPerBlock)),
          row_sum_(size_t(kRowsPerBlock)) {}

    void run(const RowBlock& block) {
        if (block.rows <= 0) return;
        seq_ = block.seq;
        band_ = kernels::key_band(p_, seq_.len_q, seq_.len_k);
        load_queries(block);
        reset_rows(block.rows);
        const int64_t block_first_key = first_visible_key(block.first_row);
        const int64_t block_last_key = last_visible_key(block.first_row + block.rows - 1);
        for (int64_t first_key = block_first_key; first_key <= block_last_key; first_key += kKeysPerTile) {
            const int64_t keys = std::min(kKeysPerTile, block_last_key + 1 - first_key);
            load_key_value_tile(block, first_key, keys);
            compute_scores(block.rows);
            for (int64_t r = 0; r < block.rows; ++r) {
                const int64_t row = block.first_row + r;
                const int64_t begin = std::max<int64_t>(0, first_visible_key(row) - first_key);
                const int64_t end = std::min(keys, last_visible_key(row) + 1 - first_key);
                if (begin >= end) continue;
                if (kernels::has_score_transform(p_)) transform_scores(block, r, first_key, begin, end);
                accumulate_row(r, begin, end);
            }
        }
        write_rows(block);
    }

private:
    // The first and last key row i may see; last < first when it sees none.
    int64_t first_visible_key(int64_t row) const { return std::max<int64_t>(0, row + band_.first); }
    int64_t last_visible_key(int64_t row) const { return std::min(seq_.len_k - 1, row + band_.last); }

    // s = softcap·tanh(s / softcap), then s -= slope·|i + len_k - len_q - j|, over keys [begin, end) of the tile.
    void transform_scores(const RowBlock& block, int64_t r, int64_t first_key, int64_t begin, int64_t end) {
        Acc* s = &scores_[size_t(r * kKeysPerTile)];
        if (p_.softcap > 0.0f) {
            const Acc cap = p_.softcap;
            for (int64_t j = begin; j < end; ++j) s[j] = cap * std::tanh(s[j] / cap);
        }
        if (p_.alibi_slopes != nullptr) {
            const Acc slope = p_.alibi_slopes[block.head];
            const int64_t diagonal =
                block.first_row + r + kernels::alibi_offset(seq_.len_q, seq_.len_k) - first_key;  // tile-relative
            for (int64_t j = begin; j < end; ++j) s[j] -= slope * Acc(std::llabs(diagonal - j));
        }
    }

    // Q block → queries_ (scaled, so scores need no further multiply), padding zeroed once by the constructor.
    void load_queries(const RowBlock& block) {
        const auto* q = static_cast<const Stored*>(p_.q);
        const Acc scale = p_.scale;
        for (int64_t r = 0; r < block.rows; ++r) {
            const Stored* src = q + offset(p_.q_strides, block.batch, seq_.q_start + block.first_row + r, block.head);
            Acc* dst = &queries_[size_t(r * dims_)];
            for (int64_t d = 0; d < p_.head_dim; ++d) dst[d] = scale * Format<E>::load(src[d]);
        }
    }

    void reset_rows(int64_t rows) {
        std::fill(out_.begin(), out_.begin() + rows * dims_, Acc(0));
        std::fill(row_max_.begin(), row_max_.begin() + rows, -std::numeric_limits<Acc>::infinity());
        std::fill(row_sum_.begin(), row_sum_.begin() + rows, Acc(0));
    }

    // K stored transposed ([dim][key]) so the score loop runs along keys, contiguous and vectorisable.
    void load_key_value_tile(const RowBlock& block, int64_t first_key, int64_t keys) {
        const auto* k = static_cast<const Stored*>(p_.k);
        const auto* v = static_cast<const Stored*>(p_.v);
        for (int64_t j = 0; j < keys; ++j) {
            const int64_t key = seq_.k_start + first_key + j;
            const Stored* k_row = k + offset(p_.k_strides, block.batch, key, block.kv_head);
            const Stored* v_row = v + offset(p_.v_strides, block.batch, key, block.kv_head);
            Acc* v_dst = &values_[size_t(j * dims_)];
            for (int64_t d = 0; d < p_.head_dim; ++d) {
                keys_transposed_[size_t(d * kKeysPerTile + j)] = Format<E>::load(k_row[d]);
                v_dst[d] = Format<E>::load(v_row[d]);
            }
        }
    }

    // S = (scale·Q)·Kᵀ for the block's rows and the tile's keys.
    void compute_scores(int64_t rows) {
        for (int64_t r = 0; r < rows; ++r) {
            Acc* s = &scores_[size_t(r * kKeysPerTile)];
            const Acc* q = &queries_[size_t(r * dims_)];
            std::fill(s, s + kKeysPerTile, Acc(0));
            for (int64_t d = 0; d < p_.head_dim; ++d)
                add_key_products(s, &keys_transposed_[size_t(d * kKeysPerTile)], q[d]);
        }
    }

    // Over keys [begin, end) of the tile: m_new = max(m, max_j s_j); O = O·exp(m - m_new) + Σ_j exp(s_j - m_new)·v_j;
    // l likewise.
    void accumulate_row(int64_t r, int64_t begin, int64_t end) {
        const Acc* s = &scores_[size_t(r * kKeysPerTile)];
        Acc* o = &out_[size_t(r * dims_)];
        const Acc tile_max = *std::max_element(s + begin, s + end);
        Acc& m = row_max_[size_t(r)];
        Acc& l = row_sum_[size_t(r)];
        if (tile_max > m) {
            const Acc correction = std::exp(m - tile_max);  // 0 for the first tile, m = -inf
            l *= correction;
            scale_row(o, correction, dims_);
            m = tile_max;
        }
        for (int64_t j = begin; j < end; ++j) {
            const Acc probability = std::exp(s[j] - m);
            l += probability;
            add_scaled_row(o, &values_[size_t(j * dims_)], probability, dims_);
        }
    }

    // O = acc / l, LSE = m + log(l); a row that saw no key keeps l = 0 and gets O = 0, LSE = -inf.
    // A row that saw a NaN score has l = NaN, so its O and LSE are NaN (never taken for a row without keys).
    void write_rows(const RowBlock& block) {
        auto* o = static_cast<Stored*>(p_.o);
        for (int64_t r = 0; r < block.rows; ++r) {
            const int64_t row = block.first_row + r;
            const Acc l = row_sum_[size_t(r)];
            const bool saw_keys = l != Acc(0);
            const Acc* acc = &out_[size_t(r * dims_)];
            Stored* dst = o + offset(p_.o_strides, block.batch, seq_.q_start + row, block.head);
            for (int64_t d = 0; d < p_.head_dim; ++d) dst[d] = Format<E>::store(saw_keys ? acc[d] / l : Acc(0));
            if (p_.lse) {
                const Acc lse = saw_keys ? row_max_[size_t(r)] + std::log(l) : -std::numeric_limits<Acc>::infinity();
                p_.lse[kernels::lse_index(p_, seq_, block.batch, block.head, row)] = static_cast<float>(lse);
            }
        }
    }

    const Problem& p_;
    const int64_t dims_;  // head_dim padded to kDimPadding
    kernels::Sequence seq_{};  // the current block's sequence
    kernels::KeyBand band_{};  // and its band
    std::vector<Acc> queries_;          // [kRowsPerBlock][dims_]
    std::vector<Acc> keys_transposed_;  // [dims_][kKeysPerTile]
    std::vector<Acc> values_;           // [kKeysPerTile][dims_]
    std::vector<Acc> scores_;           // [kRowsPerBlock][kKeysPerTile]
    std::vector<Acc> out_;              // [kRowsPerBlock][dims_], unnormalised
    std::vector<Acc> row_max_, row_sum_;
};

template <Element E>
void forward_typed(const Problem& p) {
    run_on_all_cores(row_block_count(p), [&p](const auto& next) {
        RowBlockAttention<E> attention(p);
        for (int64_t item; next(item);) attention.run(row_block(p, item));
    });
}

}  // namespace

void forward(const Problem& p) {
    switch (p.element) {
        case Element::f16: return forward_typed<Element::f16>(p);
        case Element::bf16: return forward_typed<Element::bf16>(p);
        case Element::f32: return forward_typed<Element::f32>(p);
    }
}

}  // namespace flashsci::cpu
