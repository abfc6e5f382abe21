// The CPU backward's driver: the fast paths (fast_backward_kernel.h) get one work item per (sequence, kv head), or,
// when those are too few for the threads, dQ items of (sequence, query head, rows) and dK/dV items of (sequence, kv
// head, keys), which give the same bits; the reference path, below, runs in two passes, each output element with a single writer, so no locks and a fixed order of sums:
// - pass 1, over (sequence, query head, block of query rows): D = rowsum(dO∘O) of its rows, then dQ walking the keys
//   the rows see, a tile at a time;
// - pass 2, over (sequence, kv head, block of keys): dK and dV, walking the query heads of the group and, for each,
//   the rows that see the block, a tile at a time.
// Both rebuild P = exp(S - LSE) and dP = dO·Vᵀ for their tile; dS = P∘(dP - D) (times 1 - tanh² under a softcap).
#include "cpu/cpu_backward.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "cpu/cpu_threads.h"
#include "cpu/element_format.h"
#include "cpu/fast_backward.h"
#include "cpu/fast_block.h"

namespace flashsci::cpu {
namespace {

using kernels::Element;
using kernels::Gradients;
using kernels::Problem;
using kernels::Strides;

// Query rows per pass-1 item, and per tile of rows in pass 2: a key tile, once converted, serves this many rows.
constexpr int64_t kRowsPerTile = 32;
// Keys per tile in pass 1, and per pass-2 item: K and V (both layouts) of 64 keys × 256 dims stay in L2.
constexpr int64_t kKeysPerTile = 64;
// Rows of the scratch buffers are padded to a multiple of this many values, zero-filled, so the loops over head_dim
// have a trip count the compiler vectorises without a tail.
constexpr int64_t kDimPadding = 8;

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }
int64_t blocks(int64_t count, int64_t block) { return (count + block - 1) / block; }

int64_t offset(const Strides& s, int64_t batch, int64_t row, int64_t head) {
    return batch * s.batch + row * s.seq + head * s.head;
}

// out[j] += a · b[j] over a whole tile of keys; entries past the tile's last key are never read.
template <class Acc>
void add_key_products(Acc* __restrict__ out, const Acc* __restrict__ b, Acc a) {
    for (int64_t j = 0; j < kKeysPerTile; ++j) out[j] += a * b[j];
}

// out += factor · row over a row padded to kDimPadding.
template <class Acc>
void add_scaled_row(Acc* __restrict__ out, const Acc* __restrict__ row, Acc factor, int64_t padded_dims) {
    for (int64_t c = 0; c < padded_dims; c += kDimPadding)
        for (int64_t e = 0; e < kDimPadding; ++e) out[c + e] += factor * row[c + e];
}

// Which keys the rows of one sequence see, and which rows see a key: row i sees key j iff
// i + band.first <= j <= i + band.last and 0 <= j < len_k (the causal rule and the window).
struct Visibility {
    kernels::Sequence seq;
    kernels::KeyBand band;
    int64_t first_key(int64_t row) const { return std::max<int64_t>(0, row + band.first); }
    int64_t last_key(int64_t row) const { return std::min(seq.len_k - 1, row + band.last); }
    int64_t first_row(int64_t key) const { return std::max<int64_t>(0, key - band.last); }
    int64_t last_row(int64_t key) const { return std::min(seq.len_q - 1, key - band.first); }
};

Visibility visibility(const Problem& p, int64_t batch) {
    const kernels::Sequence seq = kernels::sequence(p, batch);
    return {seq, kernels::key_band(p, seq.len_q, seq.len_k)};
}

// One (row i, key j) of a tile: P_ij and dS_ij from the scaled product x = scale·q_i·k_j, dP_ij, D_i and LSE_i.
template <class Acc>
struct ScoreGradient {
    Acc probability, score_gradient;
};

// The score is s = softcap·tanh(x / softcap) (or x), minus the ALiBi bias; P = exp(s − LSE); dS = P·(dP − D),
// times ds/dx = 1 − tanh²(x / softcap) under a softcap (the bias does not depend on x).
template <class Acc>
ScoreGradient<Acc> score_gradient(Acc x, Acc softcap, Acc alibi_bias, Acc lse, Acc dp, Acc d) {
    Acc score = x, slope_of_cap = 1;
    if (softcap > 0) {
        const Acc t = std::tanh(x / softcap);
        score = softcap * t;
        slope_of_cap = 1 - t * t;
    }
    const Acc probability = std::exp(score - alibi_bias - lse);
    return {probability, probability * (dp - d) * slope_of_cap};
}

// The rows of one query head and their per-row terms, converted to the accumulator type: scale·q, dO, LSE and D,
// tile by tile. Shared by both passes.
template <Element E>
class RowTile {
protected:
    using Stored = typename Format<E>::Stored;
    using Acc = typename Format<E>::Acc;

    RowTile(const Problem& p, const Gradients& g)
        : p_(p),
          g_(g),
          dims_(round_up(p.head_dim, kDimPadding)),
          queries_(size_t(kRowsPerTile * dims_)),
          douts_(size_t(kRowsPerTile * dims_)),
          keys_transposed_(size_t(dims_ * kKeysPerTile)),
          values_transposed_(size_t(dims_ * kKeysPerTile)),
          scores_(size_t(kRowsPerTile * kKeysPerTile)),
          score_gradients_(size_t(kRowsPerTile * kKeysPerTile)),
          lse_(size_t(kRowsPerTile)),
          d_(size_t(kRowsPerTile)) {}

    // scale·q and dO of rows [first_row, first_row + rows) of query head `head` in sequence `batch`, and their LSE.
    void load_rows(const Visibility& vis, int64_t batch, int64_t head, int64_t first_row, int64_t rows) {
        const auto* q = static_cast<const Stored*>(p_.q);
        const auto* dout = static_cast<const Stored*>(g_.dout);
        const Acc scale = p_.scale;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t row = vis.seq.q_start + first_row + r;
            const Stored* q_row = q + offset(p_.q_strides, batch, row, head);
            const Stored* dout_row = dout + offset(g_.dout_strides, batch, row, head);
            Acc* q_dst = &queries_[size_t(r * dims_)];
            Acc* dout_dst = &douts_[size_t(r * dims_)];
            for (int64_t d = 0; d < p_.head_dim; ++d) {
                q_dst[d] = scale * Format<E>::load(q_row[d]);
                dout_dst[d] = Format<E>::load(dout_row[d]);
            }
            lse_[size_t(r)] = p_.lse[kernels::lse_index(p_, vis.seq, batch, head, first_row + r)];
        }
    }

    // K and V of keys [first_key, first_key + keys) of kv head `kv_head`, transposed ([dim][key]) so that the
    // products of a row with the whole tile run along keys; K also row by row when `keys_by_row` is given.
    void load_keys(const Visibility& vis, int64_t batch, int64_t kv_head, int64_t first_key, int64_t keys,
                   std::vector<Acc>* keys_by_row) {
        const auto* k = static_cast<const Stored*>(p_.k);
        const auto* v = static_cast<const Stored*>(p_.v);
        for (int64_t j = 0; j < keys; ++j) {
            const int64_t key = vis.seq.k_start + first_key + j;
            const Stored* k_row = k + offset(p_.k_strides, batch, key, kv_head);
            const Stored* v_row = v + offset(p_.v_strides, batch, key, kv_head);
            for (int64_t d = 0; d < p_.head_dim; ++d) {
                const Acc k_value = Format<E>::load(k_row[d]);
                keys_transposed_[size_t(d * kKeysPerTile + j)] = k_value;
                values_transposed_[size_t(d * kKeysPerTile + j)] = Format<E>::load(v_row[d]);
                if (keys_by_row) (*keys_by_row)[size_t(j * dims_ + d)] = k_value;
            }
        }
    }

    // X = (scale·Q)·Kᵀ and dP = dO·Vᵀ for the loaded rows and keys (scores_ and score_gradients_ hold them; the
    // latter becomes dS in place).
    void compute_products(int64_t rows) {
        for (int64_t r = 0; r < rows; ++r) {
            Acc* x = &scores_[size_t(r * kKeysPerTile)];
            Acc* dp = &score_gradients_[size_t(r * kKeysPerTile)];
            const Acc* q = &queries_[size_t(r * dims_)];
            const Acc* dout = &douts_[size_t(r * dims_)];
            std::fill(x, x + kKeysPerTile, Acc(0));
            std::fill(dp, dp + kKeysPerTile, Acc(0));
            for (int64_t d = 0; d < p_.head_dim; ++d) {
                add_key_products(x, &keys_transposed_[size_t(d * kKeysPerTile)], q[d]);
                add_key_products(dp, &values_transposed_[size_t(d * kKeysPerTile)], dout[d]);
            }
        }
    }

    // Over keys [begin, end) of the tile (tile-relative) of row r, sequence row `row`, query head `head`: scores_
    // becomes P and score_gradients_ becomes dS.
    void rebuild_row(const Visibility& vis, int64_t head, int64_t r, int64_t row, int64_t first_key, int64_t begin,
                     int64_t end) {
        Acc* x = &scores_[size_t(r * kKeysPerTile)];
        Acc* dp = &score_gradients_[size_t(r * kKeysPerTile)];
        const Acc softcap = p_.softcap;
        const Acc slope = p_.alibi_slopes ? Acc(p_.alibi_slopes[head]) : Acc(0);
        const int64_t diagonal = row + kernels::alibi_offset(vis.seq.len_q, vis.seq.len_k) - first_key;
        const Acc lse = lse_[size_t(r)], d = d_[size_t(r)];
        for (int64_t j = begin; j < end; ++j) {
            const Acc bias = slope * Acc(std::llabs(diagonal - j));
            const ScoreGradient<Acc> sg = score_gradient(x[j], softcap, bias, lse, dp[j], d);
            x[j] = sg.probability;
            dp[j] = sg.score_gradient;
        }
    }

    const Problem& p_;
    const Gradients& g_;
    const int64_t dims_;                  // head_dim padded to kDimPadding
    std::vector<Acc> queries_;            // [kRowsPerTile][dims_]: scale·q
    std::vector<Acc> douts_;              // [kRowsPerTile][dims_]
    std::vector<Acc> keys_transposed_;    // [dims_][kKeysPerTile]
    std::vector<Acc> values_transposed_;  // [dims_][kKeysPerTile]
    std::vector<Acc> scores_;             // [kRowsPerTile][kKeysPerTile]: scale·q·k, then P
    std::vector<Acc> score_gradients_;    // [kRowsPerTile][kKeysPerTile]: dP, then dS
    std::vector<Acc> lse_, d_;            // [kRowsPerTile]
};

// Pass 1 item: rows [first_row, first_row + rows) of query head `head` in sequence `batch` (rows <= 0: past the end
// of a shorter sequence of a variable-length batch, nothing to do).
struct QueryBlock {
    int64_t batch, head, kv_head, first_row, rows;
};

QueryBlock query_block(const Problem& p, int64_t item) {
    const int64_t per_head = blocks(p.seqlen_q, kRowsPerTile);
    const int64_t head = (item / per_head) % p.heads_q;
    const int64_t batch = item / per_head / p.heads_q;
    const int64_t first_row = item % per_head * kRowsPerTile;
    const int64_t len_q = kernels::sequence(p, batch).len_q;
    return {batch, head, head / (p.heads_q / p.heads_kv), first_row, std::min(kRowsPerTile, len_q - first_row)};
}

// D_i = Σ_d dO_id·O_id of each row, then dQ = scale·dS·K over the keys the rows see; D goes to `row_terms`
// (laid out as the LSE) for pass 2.
template <Element E>
class QueryGradient : RowTile<E> {
    using Base = RowTile<E>;
    using typename Base::Acc;
    using typename Base::Stored;
    using Base::dims_;
    using Base::douts_;
    using Base::g_;
    using Base::p_;

public:
    QueryGradient(const Problem& p, const Gradients& g, Acc* row_terms)
        : Base(p, g),
          row_terms_(row_terms),
          keys_(size_t(kKeysPerTile * dims_)),
          dq_(size_t(kRowsPerTile * dims_)) {}

    void run(const QueryBlock& block) {
        if (block.rows <= 0) return;
        const Visibility vis = visibility(p_, block.batch);
        this->load_rows(vis, block.batch, block.head, block.first_row, block.rows);
        compute_row_terms(vis, block);
        std::fill(dq_.begin(), dq_.end(), Acc(0));
        const int64_t block_first_key = vis.first_key(block.first_row);
        const int64_t block_last_key = vis.last_key(block.first_row + block.rows - 1);
        for (int64_t first_key = block_first_key; first_key <= block_last_key; first_key += kKeysPerTile) {
            const int64_t keys = std::min(kKeysPerTile, block_last_key + 1 - first_key);
            this->load_keys(vis, block.batch, block.kv_head, first_key, keys, &keys_);
            this->compute_products(block.rows);
            for (int64_t r = 0; r < block.rows; ++r) {
                const int64_t row = block.first_row + r;
                const int64_t begin = std::max<int64_t>(0, vis.first_key(row) - first_key);
                const int64_t end = std::min(keys, vis.last_key(row) + 1 - first_key);
                if (begin >= end) continue;
                this->rebuild_row(vis, block.head, r, row, first_key, begin, end);
                // dQ_i += dS_ij · k_j
                const Acc* ds = &this->score_gradients_[size_t(r * kKeysPerTile)];
                Acc* dq = &dq_[size_t(r * dims_)];
                for (int64_t j = begin; j < end; ++j) add_scaled_row(dq, &keys_[size_t(j * dims_)], ds[j], dims_);
            }
        }
        write_dq(vis, block);
    }

private:
    // D_i = Σ_d dO_id·O_id, kept for this block and stored for pass 2.
    void compute_row_terms(const Visibility& vis, const QueryBlock& block) {
        const auto* o = static_cast<const Stored*>(p_.o);
        for (int64_t r = 0; r < block.rows; ++r) {
            const int64_t row = block.first_row + r;
            const Stored* o_row = o + offset(p_.o_strides, block.batch, vis.seq.q_start + row, block.head);
            const Acc* dout = &douts_[size_t(r * dims_)];
            Acc d = 0;
            for (int64_t c = 0; c < p_.head_dim; ++c) d += dout[c] * Format<E>::load(o_row[c]);
            this->d_[size_t(r)] = d;
            row_terms_[kernels::lse_index(p_, vis.seq, block.batch, block.head, row)] = d;
        }
    }

    // dQ = scale · (dS·K); a row that saw no key keeps 0.
    void write_dq(const Visibility& vis, const QueryBlock& block) {
        auto* dq = static_cast<Stored*>(g_.dq);
        const Acc scale = p_.scale;
        for (int64_t r = 0; r < block.rows; ++r) {
            Stored* dst = dq + offset(g_.dq_strides, block.batch, vis.seq.q_start + block.first_row + r, block.head);
            const Acc* acc = &dq_[size_t(r * dims_)];
            for (int64_t d = 0; d < p_.head_dim; ++d) dst[d] = Format<E>::store(scale * acc[d]);
        }
    }

    Acc* row_terms_;         // D of every row, laid out as the LSE
    std::vector<Acc> keys_;  // [kKeysPerTile][dims_]
    std::vector<Acc> dq_;    // [kRowsPerTile][dims_]: dS·K
};

// Pass 2 item: keys [first_key, first_key + keys) of kv head `kv_head` in sequence `batch` (keys <= 0: past the
// end of a shorter sequence, nothing to do).
struct KeyBlock {
    int64_t batch, kv_head, first_key, keys;
};

KeyBlock key_block(const Problem& p, int64_t item) {
    const int64_t per_head = blocks(p.seqlen_k, kKeysPerTile);
    const int64_t kv_head = (item / per_head) % p.heads_kv;
    const int64_t batch = item / per_head / p.heads_kv;
    const int64_t first_key = item % per_head * kKeysPerTile;
    const int64_t len_k = kernels::sequence(p, batch).len_k;
    return {batch, kv_head, first_key, std::min(kKeysPerTile, len_k - first_key)};
}

// dV = Pᵀ·dO and dK = dSᵀ·(scale·Q) of one key block, summed over the query heads that read its kv head.
template <Element E>
class KeyValueGradient : RowTile<E> {
    using Base = RowTile<E>;
    using typename Base::Acc;
    using typename Base::Stored;
    using Base::dims_;
    using Base::douts_;
    using Base::g_;
    using Base::p_;
    using Base::queries_;

public:
    KeyValueGradient(const Problem& p, const Gradients& g, const Acc* row_terms)
        : Base(p, g),
          row_terms_(row_terms),
          dk_(size_t(kKeysPerTile * dims_)),
          dv_(size_t(kKeysPerTile * dims_)) {}

    void run(const KeyBlock& block) {
        if (block.keys <= 0) return;
        const Visibility vis = visibility(p_, block.batch);
        this->load_keys(vis, block.batch, block.kv_head, block.first_key, block.keys, nullptr);
        std::fill(dk_.begin(), dk_.end(), Acc(0));
        std::fill(dv_.begin(), dv_.end(), Acc(0));
        const int64_t first_row = vis.first_row(block.first_key);
        const int64_t last_row = vis.last_row(block.first_key + block.keys - 1);
        const int64_t group = p_.heads_q / p_.heads_kv;
        for (int64_t head = block.kv_head * group; head < (block.kv_head + 1) * group; ++head)
            for (int64_t tile_row = first_row; tile_row <= last_row; tile_row += kRowsPerTile)
                add_row_tile(vis, block, head, tile_row, std::min(kRowsPerTile, last_row + 1 - tile_row));
        write_dk_dv(vis, block);
    }

private:
    void add_row_tile(const Visibility& vis, const KeyBlock& block, int64_t head, int64_t tile_row, int64_t rows) {
        this->load_rows(vis, block.batch, head, tile_row, rows);
        for (int64_t r = 0; r < rows; ++r)
            this->d_[size_t(r)] = row_terms_[kernels::lse_index(p_, vis.seq, block.batch, head, tile_row + r)];
        this->compute_products(rows);
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t row = tile_row + r;
            const int64_t begin = std::max<int64_t>(0, vis.first_key(row) - block.first_key);
            const int64_t end = std::min(block.keys, vis.last_key(row) + 1 - block.first_key);
            if (begin >= end) continue;
            this->rebuild_row(vis, head, r, row, block.first_key, begin, end);
            const Acc* probability = &this->scores_[size_t(r * kKeysPerTile)];
            const Acc* ds = &this->score_gradients_[size_t(r * kKeysPerTile)];
            const Acc* dout = &douts_[size_t(r * dims_)];
            const Acc* q = &queries_[size_t(r * dims_)];
            for (int64_t j = begin; j < end; ++j) {
                add_scaled_row(&dv_[size_t(j * dims_)], dout, probability[j], dims_);  // dV_j += P_ij · dO_i
                add_scaled_row(&dk_[size_t(j * dims_)], q, ds[j], dims_);              // dK_j += dS_ij · scale·q_i
            }
        }
    }

    // Every key of the block, 0 where no row saw it.
    void write_dk_dv(const Visibility& vis, const KeyBlock& block) {
        auto* dk = static_cast<Stored*>(g_.dk);
        auto* dv = static_cast<Stored*>(g_.dv);
        for (int64_t j = 0; j < block.keys; ++j) {
            const int64_t key = vis.seq.k_start + block.first_key + j;
            Stored* dk_row = dk + offset(g_.dk_strides, block.batch, key, block.kv_head);
            Stored* dv_row = dv + offset(g_.dv_strides, block.batch, key, block.kv_head);
            for (int64_t d = 0; d < p_.head_dim; ++d) {
                dk_row[d] = Format<E>::store(dk_[size_t(j * dims_ + d)]);
                dv_row[d] = Format<E>::store(dv_[size_t(j * dims_ + d)]);
            }
        }
    }

    const Acc* row_terms_;  // D of every row, from pass 1
    std::vector<Acc> dk_;   // [kKeysPerTile][dims_]
    std::vector<Acc> dv_;   // [kKeysPerTile][dims_]
};

// Rows of the LSE layout: [batch, heads_q, seqlen_q], or [heads_q, total_q] varlen.
int64_t row_count(const Problem& p) { return p.varlen ? p.heads_q * p.total_q : p.batch * p.heads_q * p.seqlen_q; }

template <Element E>
void backward_typed(const Problem& p, const Gradients& g) {
    using Acc = typename Format<E>::Acc;
    std::vector<Acc> row_terms(size_t(row_count(p)));
    run_parallel(p.batch * p.heads_q * blocks(p.seqlen_q, kRowsPerTile), thread_count(), [&](const auto& next) {
        QueryGradient<E> pass(p, g, row_terms.data());
        for (int64_t item; next(item);) pass.run(query_block(p, item));
    });
    run_parallel(p.batch * p.heads_kv * blocks(p.seqlen_k, kKeysPerTile), thread_count(), [&](const auto& next) {
        KeyValueGradient<E> pass(p, g, row_terms.data());
        for (int64_t item; next(item);) pass.run(key_block(p, item));
    });
}

void backward_reference(const Problem& p, const Gradients& g) {
    switch (p.element) {
        case Element::f16: return backward_typed<Element::f16>(p, g);
        case Element::bf16: return backward_typed<Element::bf16>(p, g);
        case Element::f32: return backward_typed<Element::f32>(p, g);
    }
}

// The fast paths' blocking: keys whose dK and dV are held at once, query rows per block of scores.
constexpr int64_t kFastKeyBlock = 64;
constexpr int64_t kFastQueryBlock = 256;
// Split items: rows per dQ item, key blocks per dK/dV item. Each converts what it reads once, for this much work.
constexpr int64_t kSplitRows = 256;
constexpr int64_t kSplitKeyBlocks = 4;
// A whole item computes 5 products, its split items 7 (S and dP twice): split while whole items would leave more
// than this share of the threads idle.
constexpr int64_t kWholeProducts = 5;
constexpr int64_t kSplitProducts = 7;
// With grouped or multi-query heads, each query head is its own item, its dK and dV summed in fp32 apart and then
// over the group in head order, unless those sums would take more memory than this.
constexpr int64_t kMaxHeadSumBytes = int64_t(1) << 30;
static_assert(kFastKeyBlock % kAvx2Tile.width == 0 && kFastKeyBlock % kAvx512Tile.width == 0 &&
                  kFastKeyBlock % kPortableTile.width == 0,
              "a key block is whole register tiles of columns");
// Scratch buffers start on cache lines.
constexpr int64_t kAlignFloats = 64 / sizeof(float);

FastBackwardFunction backward_function(Isa isa) {
#if defined(FLASHSCI_CPU_X86)
    if (isa == Isa::avx512) return fast_backward_avx512;
    if (isa == Isa::avx2) return fast_backward_avx2;
#else
    (void)isa;
#endif
    return fast_backward_portable;
}

// One thread's buffers (fast_backward.h), on cache-line boundaries.
class BackwardScratch {
public:
    BackwardScratch(const Problem& p, const FastBackwardProblem& f) {
        const int64_t rows = p.heads_q / p.heads_kv * p.seqlen_q, ld = f.padded_dims, kb = f.key_block;
        float** buffers[] = {&b_.queries, &b_.query_panels, &b_.douts, &b_.dout_panels, &b_.dq, &b_.lse,
                             &b_.row_terms, &b_.keys, &b_.keys_t, &b_.values_t, &b_.dk, &b_.dv, &b_.probs, &b_.grads};
        const int64_t counts[] = {rows * ld, rows * ld, rows * ld, rows * ld, rows * ld, rows, rows, kb * ld, ld * kb,
                                  ld * kb, kb * ld, kb * ld, f.query_block * kb, f.query_block * kb};
        int64_t total = kAlignFloats;
        for (int64_t n : counts) total += round_up(n, kAlignFloats);
        floats_.resize(size_t(total));
        const auto address = reinterpret_cast<uintptr_t>(floats_.data());
        const uintptr_t line = kAlignFloats * sizeof(float);
        float* next = reinterpret_cast<float*>((address + line - 1) / line * line);
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; ++i) {
            *buffers[i] = next;
            next += round_up(counts[i], kAlignFloats);
        }
    }
    const FastBackwardScratch& buffers() const { return b_; }

private:
    std::vector<float> floats_;
    FastBackwardScratch b_{};
};

FastBackwardHead head_of(const Problem& p, const Gradients& g, int64_t batch, int64_t kv_head) {
    const kernels::Sequence seq = kernels::sequence(p, batch);
    const kernels::KeyBand band = kernels::key_band(p, seq.len_q, seq.len_k);
    const int64_t group = p.heads_q / p.heads_kv, head = kv_head * group;
    const int64_t bytes = kernels::element_bytes(p.element);
    const auto in = [&](const void* base, const Strides& s, int64_t row, int64_t h) {
        return static_cast<const char*>(base) + bytes * offset(s, batch, row, h);
    };
    const auto out = [&](void* base, const Strides& s, int64_t row, int64_t h) {
        return static_cast<char*>(base) + bytes * offset(s, batch, row, h);
    };
    FastBackwardHead h{};
    h.q = in(p.q, p.q_strides, seq.q_start, head);
    h.o = in(p.o, p.o_strides, seq.q_start, head);
    h.dout = in(g.dout, g.dout_strides, seq.q_start, head);
    h.dq = out(g.dq, g.dq_strides, seq.q_start, head);
    h.q_row_stride = p.q_strides.seq, h.q_head_stride = p.q_strides.head;
    h.o_row_stride = p.o_strides.seq, h.o_head_stride = p.o_strides.head;
    h.dout_row_stride = g.dout_strides.seq, h.dout_head_stride = g.dout_strides.head;
    h.dq_row_stride = g.dq_strides.seq, h.dq_head_stride = g.dq_strides.head;
    h.k = in(p.k, p.k_strides, seq.k_start, kv_head);
    h.v = in(p.v, p.v_strides, seq.k_start, kv_head);
    h.dk = out(g.dk, g.dk_strides, seq.k_start, kv_head);
    h.dv = out(g.dv, g.dv_strides, seq.k_start, kv_head);
    h.k_row_stride = p.k_strides.seq, h.v_row_stride = p.v_strides.seq;
    h.dk_row_stride = g.dk_strides.seq, h.dv_row_stride = g.dv_strides.seq;
    h.lse = p.lse + kernels::lse_index(p, seq, batch, head, 0);
    h.lse_head_stride = group > 1 ? kernels::lse_index(p, seq, batch, head + 1, 0) - kernels::lse_index(p, seq, batch, head, 0) : 0;
    h.alibi_slopes = p.alibi_slopes ? p.alibi_slopes + head : nullptr;
    h.group = group, h.len_q = seq.len_q, h.len_k = seq.len_k;
    h.band_first = band.first, h.band_last = band.last;
    h.alibi_offset = kernels::alibi_offset(seq.len_q, seq.len_k);
    return h;
}

struct BackwardItem {
    int64_t batch, kv_head;
    FastBackwardPart part;
    int64_t cost;  // ~ query-key pairs times products
};

// Per query head, the fp32 dK and dV sums of every key: [heads_q][key rows][padded_dims], key rows those of the
// packed k (varlen) or batch·seqlen_k.
class HeadSums {
public:
    HeadSums(const Problem& p, int64_t padded_dims)
        : p_(p), ld_(padded_dims), key_rows_(p.varlen ? p.total_k : p.batch * p.seqlen_k) {}
    static int64_t bytes(const Problem& p, int64_t padded_dims) {
        return 2 * p.heads_q * (p.varlen ? p.total_k : p.batch * p.seqlen_k) * padded_dims * int64_t(sizeof(float));
    }
    void allocate() { sums_.resize(size_t(2 * p_.heads_q * key_rows_ * ld_)); }
    // Key 0 of sequence b's sums for query head h.
    float* dk(int64_t b, int64_t h) { return sums_.data() + (h * key_rows_ + key_row(b)) * ld_; }
    float* dv(int64_t b, int64_t h) { return dk(b, h) + p_.heads_q * key_rows_ * ld_; }

private:
    int64_t key_row(int64_t b) const { return p_.varlen ? kernels::sequence(p_, b).k_start : b * p_.seqlen_k; }
    const Problem& p_;
    const int64_t ld_, key_rows_;
    std::vector<float> sums_;
};

// The items: per kv head (its query heads in turn) or, with sums, per query head; whole or, with `split`, dQ items
// of rows and dK/dV items of keys; longest first.
std::vector<BackwardItem> backward_items(const Problem& p, bool split, HeadSums* sums) {
    const int64_t group = p.heads_q / p.heads_kv;
    const int64_t heads_per_unit = sums ? 1 : group;
    std::vector<BackwardItem> items;
    for (int64_t b = 0; b < p.batch; ++b) {
        const kernels::Sequence seq = kernels::sequence(p, b);
        const kernels::KeyBand band = kernels::key_band(p, seq.len_q, seq.len_k);
        const auto rows_seeing = [&](int64_t first, int64_t end) {  // rows that see some key of [first, end)
            return std::make_pair(std::max<int64_t>(0, first - band.last), std::min(seq.len_q, end - band.first));
        };
        const auto keys_seen = [&](int64_t first, int64_t end) {  // keys some row of [first, end) sees
            return std::make_pair(std::max<int64_t>(0, first + band.first), std::min(seq.len_k, end + band.last));
        };
        for (int64_t kv = 0; kv < p.heads_kv; ++kv)
            for (int64_t first_head = 0; first_head < group; first_head += heads_per_unit) {
                const int64_t end_head = first_head + heads_per_unit;
                float* dk_sums = sums ? sums->dk(b, kv * group + first_head) : nullptr;
                float* dv_sums = sums ? sums->dv(b, kv * group + first_head) : nullptr;
                if (!split) {
                    const int64_t cost = heads_per_unit * seq.len_q * seq.len_k * kWholeProducts;
                    items.push_back({b, kv, {true, true, first_head, end_head, 0, seq.len_q, 0, seq.len_k, dk_sums,
                                             dv_sums}, cost});
                    continue;
                }
                for (int64_t head = first_head; head < end_head; ++head)
                    for (int64_t first = 0; first < seq.len_q; first += kSplitRows) {
                        const int64_t end = std::min(seq.len_q, first + kSplitRows);
                        const auto keys = keys_seen(first, end);
                        const int64_t cost = (end - first) * std::max<int64_t>(0, keys.second - keys.first) * 3;
                        items.push_back({b, kv, {true, false, head, head + 1, first, end, 0, seq.len_k, nullptr,
                                                 nullptr}, cost});
                    }
                const int64_t span = kSplitKeyBlocks * kFastKeyBlock;
                for (int64_t first = 0; first < seq.len_k; first += span) {
                    const int64_t end = std::min(seq.len_k, first + span);
                    const auto rows = rows_seeing(first, end);
                    const int64_t cost = heads_per_unit * std::max<int64_t>(0, rows.second - rows.first) * (end - first) * 4;
                    items.push_back({b, kv, {false, true, first_head, end_head, rows.first, rows.second, first, end,
                                             dk_sums, dv_sums}, cost});
                }
            }
    }
    std::stable_sort(items.begin(), items.end(), [](const BackwardItem& a, const BackwardItem& b) { return a.cost > b.cost; });
    return items;
}

// dK and dV of every (sequence, kv head) = the sums of its query heads, added in head order, rounded once.
template <Element E>
void store_head_sums(const Problem& p, const Gradients& g, HeadSums& sums, int64_t padded_dims, int64_t threads) {
    using Stored = typename Format<E>::Stored;
    const int64_t group = p.heads_q / p.heads_kv, span = kSplitKeyBlocks * kFastKeyBlock;
    const int64_t chunks = blocks(p.seqlen_k, span);
    run_parallel(p.batch * p.heads_kv * chunks, threads, [&](const auto& next) {
        std::vector<float> total(static_cast<size_t>(padded_dims));
        for (int64_t item; next(item);) {
            const int64_t b = item / chunks / p.heads_kv, kv = item / chunks % p.heads_kv;
            const kernels::Sequence seq = kernels::sequence(p, b);
            const FastBackwardHead h = head_of(p, g, b, kv);
            for (int64_t j = item % chunks * span; j < std::min(seq.len_k, (item % chunks + 1) * span); ++j)
                for (const bool values : {false, true}) {
                    std::fill(total.begin(), total.end(), 0.0f);
                    for (int64_t head = kv * group; head < (kv + 1) * group; ++head) {
                        const float* row = (values ? sums.dv(b, head) : sums.dk(b, head)) + j * padded_dims;
                        for (int64_t d = 0; d < padded_dims; ++d) total[size_t(d)] += row[d];
                    }
                    Stored* out = static_cast<Stored*>(values ? h.dv : h.dk) + j * (values ? h.dv_row_stride : h.dk_row_stride);
                    for (int64_t d = 0; d < p.head_dim; ++d) out[d] = Format<E>::store(total[size_t(d)]);
                }
        }
    });
}

void backward_fast(const Problem& p, const Gradients& g, Isa isa) {
    const MicroTile tile = micro_tile(isa);
    FastBackwardProblem f{};
    f.element = p.element;
    f.head_dim = p.head_dim;
    f.padded_dims = round_up(p.head_dim, tile.width);
    f.key_block = kFastKeyBlock;
    f.query_block = kFastQueryBlock;
    f.scale = p.scale;
    f.softcap = p.softcap;
    const FastBackwardFunction run_item = backward_function(isa);
    const int64_t threads = thread_count();
    // Both choices depend on the shape only, so that the sums, and the bits, do not depend on the threads.
    const bool per_head = p.heads_q > p.heads_kv && HeadSums::bytes(p, f.padded_dims) <= kMaxHeadSumBytes;
    const int64_t units = p.batch * (per_head ? p.heads_q : p.heads_kv);
    const bool split = units * kSplitProducts < threads * kWholeProducts;
    HeadSums sums(p, f.padded_dims);
    if (per_head) sums.allocate();
    const std::vector<BackwardItem> items = backward_items(p, split, per_head ? &sums : nullptr);
    run_parallel(int64_t(items.size()), threads, [&](const auto& next) {
        const BackwardScratch scratch(p, f);
        for (int64_t n; next(n);) {
            const BackwardItem& item = items[size_t(n)];
            run_item(f, head_of(p, g, item.batch, item.kv_head), item.part, scratch.buffers());
        }
    });
    if (!per_head) return;
    switch (p.element) {
        case Element::f16: return store_head_sums<Element::f16>(p, g, sums, f.padded_dims, threads);
        case Element::bf16: return store_head_sums<Element::bf16>(p, g, sums, f.padded_dims, threads);
        case Element::f32: return store_head_sums<Element::f32>(p, g, sums, f.padded_dims, threads);
    }
}

}  // namespace

void backward(const Problem& p, const Gradients& g, Isa isa) {
    if (isa == Isa::reference) return backward_reference(p, g);
    backward_fast(p, g, isa);
}

void backward(const Problem& p, const Gradients& g) {
    Isa isa;
    const char* unusable = nullptr;
    if (!chosen_isa(&isa, &unusable)) isa = best_isa();
    backward(p, g, isa);
}

}  // namespace flashsci::cpu
