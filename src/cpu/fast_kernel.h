// The blocked fast path of the CPU backend, written once over a vector type V (simd_*.h) and built once per
// instruction set (fast_*.cpp). One work item holds block_rows query rows with their online softmax (running
// max m, running sum l, unnormalised O) and walks the keys tile by tile: a K/V tile is converted to fp32 once
// and serves every row of the item, group_rows rows at a time:
//   S = scale · Q·Kᵀ                      register tiles of rows × width, over head_dim
//   m_new = max(m, max_j S), P = exp(S - m_new), l = l·exp(m - m_new) + Σ_j P
//   O = O·exp(m - m_new) + P·V            register tiles of rows × width, over the tile's keys
// Everything here has internal linkage and calls only intrinsics and builtins (see fast_block.h).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cpu/fast_block.h"
#include "cpu/half.h"

namespace flashsci::cpu {
namespace {

using kernels::Element;

constexpr float kInfinity = __builtin_inff();
// A row keeps its softmax reference while a tile's scores exceed it by at most this (P <= 2⁸), so most tiles
// need neither a maximum pass before the exp nor a rescale of O.
constexpr double kRescaleMargin = 8 * 0.69314718055994531;

inline int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t clamp_to(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }
inline int64_t round_down_to(int64_t x, int64_t multiple) { return x / multiple * multiple; }
inline int64_t round_up_to(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }
inline int64_t abs_of(int64_t x) { return x < 0 ? -x : x; }

template <class V, Element E>
class FastAttention {
    using F = typename V::F;
    static constexpr int kLanes = V::kLanes;
    static constexpr int kVectors = 2;                    // per register tile row
    static constexpr int kWidth = kVectors * kLanes;      // keys (S) or dims (O) per register tile
    static constexpr int kRows = V::kTileRows;            // query rows per register tile
    static constexpr bool kFp32 = E == Element::f32;
    using Stored = typename std::conditional<kFp32, float, uint16_t>::type;
    static constexpr int64_t kPrefetchRows = 8;           // K/V rows requested ahead of their conversion

public:
    FastAttention(const FastProblem& p, const FastBlock& b, const FastScratch& w)
        : p_(p), b_(b), w_(w), dims_(p.head_dim), ld_(p.padded_dims), ldk_(p.tile_keys) {}

    void run() {
        const int64_t padded_rows = round_up_to(b_.rows, kRows);
        load_queries(padded_rows);
        for (int64_t e = 0; e < padded_rows * ld_; ++e) w_.out[e] = 0.0f;
        for (int64_t r = 0; r < b_.rows; ++r) w_.row_max[r] = -double(kInfinity), w_.row_sum[r] = 0.0f;
        const int64_t first_key = max_of(0, b_.first_row + b_.band_first);
        const int64_t end_key = min_of(b_.len_k, b_.first_row + b_.rows - 1 + b_.band_last + 1);
        for (int64_t tile = round_down_to(first_key, ldk_); tile < end_key; tile += ldk_) {
            const int64_t keys = min_of(ldk_, b_.len_k - tile);
            load_tile(tile, keys);
            for (int64_t g = 0; g < b_.rows; g += p_.group_rows) run_group(g, min_of(p_.group_rows, b_.rows - g), tile, keys);
        }
        write_rows();
    }

private:
    // Row r of the block sees keys [visible_begin, visible_end) of the tile starting at key `tile`.
    int64_t visible_begin(int64_t r, int64_t tile, int64_t keys) const {
        return clamp_to(b_.first_row + r + b_.band_first - tile, 0, keys);
    }
    int64_t visible_end(int64_t r, int64_t tile, int64_t keys) const {
        return clamp_to(b_.first_row + r + b_.band_last + 1 - tile, 0, keys);
    }

    // n elements of a row of E → fp32.
    static void convert_row(const void* src, int64_t n, float* dst) {
        int64_t d = 0;
        if constexpr (E == Element::f32) {
            const float* s = static_cast<const float*>(src);
            for (; d + kLanes <= n; d += kLanes) V::store(dst + d, V::load(s + d));
            for (; d < n; ++d) dst[d] = s[d];
        } else {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (; d + kLanes <= n; d += kLanes)
                V::store(dst + d, E == Element::bf16 ? V::from_bf16(s + d) : V::from_fp16(s + d));
            for (; d < n; ++d) dst[d] = E == Element::bf16 ? bf16_to_float(s[d]) : fp16_to_float(s[d]);
        }
    }

    void prefetch_row(const Stored* row) const {
        constexpr int64_t kLine = 64;
        const char* bytes = reinterpret_cast<const char*>(row);
        for (int64_t offset = 0; offset < dims_ * int64_t(sizeof(Stored)); offset += kLine) __builtin_prefetch(bytes + offset);
    }

    // |x|² of a row padded with zeros to a whole number of vectors.
    static float squared_norm(const float* x, int64_t padded) {
        F sum = V::zero();
        for (int64_t d = 0; d < padded; d += kLanes) sum = V::fma(V::load(x + d), V::load(x + d), sum);
        return V::reduce_add(sum);
    }

    template <class T>
    static const T* row_of(const void* base, int64_t stride, int64_t row) {
        return static_cast<const T*>(base) + row * stride;
    }

    // Q → queries (padding rows and dims zero), and |q|² per row for fp32 inputs.
    void load_queries(int64_t padded_rows) {
        for (int64_t r = 0; r < padded_rows; ++r) {
            float* dst = w_.queries + r * ld_;
            const int64_t filled = r < b_.rows ? dims_ : 0;
            if (filled) convert_row(row_of<Stored>(b_.q, b_.q_row_stride, r), dims_, dst);
            for (int64_t d = filled; d < ld_; ++d) dst[d] = 0.0f;
            if (kFp32 && r < b_.rows) w_.query_norm2[r] = squared_norm(dst, ld_);
        }
    }

    // Keys tile .. tile + keys - 1 → K transposed in panels of kWidth keys × head_dim (the tail of the last
    // panel zero) and V in panels of the tile's keys × kWidth dims, so that a register tile's operand is
    // contiguous (rows a cache line apart for V); |k|² per key for fp32 inputs; whether V holds only finite
    // values. K kLanes keys at a time: converted row by row, then transposed.
    void load_tile(int64_t tile, int64_t keys) {
        F finite_probe = V::zero();  // stays 0 unless some v is Inf or NaN (v·0 is then NaN)
        float* k_rows = w_.key_rows;
        for (int64_t jb = 0; jb < round_up_to(keys, kWidth); jb += kLanes) {
            for (int64_t i = 0; i < kLanes; ++i) {
                const int64_t j = jb + i;
                float* k = k_rows + i * ld_;
                if (j < keys) {
                    // Rows lie a seq stride apart, often a page or more: the hardware prefetchers miss them.
                    if (j + kPrefetchRows < keys) {
                        prefetch_row(row_of<Stored>(b_.v, b_.v_row_stride, tile + j + kPrefetchRows));
                        prefetch_row(row_of<Stored>(b_.k, b_.k_row_stride, tile + j + kPrefetchRows));
                    }
                    convert_row(row_of<Stored>(b_.k, b_.k_row_stride, tile + j), dims_, k);
                    for (int64_t d = dims_; d < ld_; ++d) k[d] = 0.0f;
                    if (kFp32) w_.key_norm2[j] = squared_norm(k, ld_);
                } else {
                    for (int64_t d = 0; d < ld_; ++d) k[d] = 0.0f;
                }
            }
            float* panel = w_.keys + (jb / kWidth) * kWidth * dims_ + jb % kWidth;
            int64_t d = 0;
            for (; d + kLanes <= dims_; d += kLanes) V::transpose(k_rows + d, ld_, panel + d * kWidth, kWidth);
            for (; d < dims_; ++d)
                for (int64_t i = 0; i < kLanes; ++i) panel[d * kWidth + i] = k_rows[i * ld_ + d];
            for (int64_t j = jb; j < min_of(jb + kLanes, keys); ++j) {
                const Stored* v_row = row_of<Stored>(b_.v, b_.v_row_stride, tile + j);
                for (int64_t c = 0; c < ld_; c += kWidth) {
                    float* v = value_panel(c) + j * kWidth;
                    const int64_t filled = clamp_to(dims_ - c, 0, kWidth);
                    convert_row(v_row + c, filled, v);
                    for (int64_t e = filled; e < kWidth; ++e) v[e] = 0.0f;
                    for (int64_t e = 0; e < kWidth; e += kLanes) finite_probe = V::fma(V::load(v + e), V::zero(), finite_probe);
                }
            }
        }
        values_finite_ = V::reduce_add(finite_probe) == 0.0f;
        tile_key_norm2_max_ = 0.0f;
        if (kFp32)
            for (int64_t j = 0; j < keys; ++j)
                tile_key_norm2_max_ = w_.key_norm2[j] > tile_key_norm2_max_ ? w_.key_norm2[j] : tile_key_norm2_max_;
    }

    // The panel of V holding head dims c .. c + kWidth - 1: [tile_keys][kWidth].
    float* value_panel(int64_t c) const { return w_.values + c * ldk_; }

    // S[r][j] = scale · q_r·k_j for ROWS rows and kWidth keys of one panel.
    template <int ROWS>
    static void score_tile(const float* q, int64_t ldq, const float* panel, int64_t dims, F scale, float* s,
                           int64_t lds) {
        F acc[ROWS][kVectors];
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c) acc[r][c] = V::zero();
        for (int64_t d = 0; d < dims; ++d) {
            F k[kVectors];
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c) k[c] = V::load(panel + d * kWidth + c * kLanes);
#pragma GCC unroll 16
            for (int r = 0; r < ROWS; ++r) {
                const F q_rd = V::set1(q[r * ldq + d]);
#pragma GCC unroll 4
                for (int c = 0; c < kVectors; ++c) acc[r][c] = V::fma(q_rd, k[c], acc[r][c]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c) V::store(s + r * lds + c * kLanes, V::mul(acc[r][c], scale));
    }

    // O[r][c..c+kWidth) = O·correction[r] + Σ_{j in [begin, end)} P[r][j]·V[j][c..] for ROWS rows. The tile's sum
    // starts from zero and joins O once, so rounding errors grow with the tile's keys, not the sequence's.
    template <int ROWS>
    static void accumulate_tile(const float* pr, int64_t ldp, const float* v, int64_t ldv, int64_t begin,
                                int64_t end, const float* correction, float* o, int64_t ldo) {
        F acc[ROWS][kVectors];
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r)
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c) acc[r][c] = V::zero();
        for (int64_t j = begin; j < end; ++j) {
            F vj[kVectors];
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c) vj[c] = V::load(v + j * ldv + c * kLanes);
#pragma GCC unroll 16
            for (int r = 0; r < ROWS; ++r) {
                const F p_rj = V::set1(pr[r * ldp + j]);
#pragma GCC unroll 4
                for (int c = 0; c < kVectors; ++c) acc[r][c] = V::fma(p_rj, vj[c], acc[r][c]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; ++r) {
            const F factor = V::set1(correction[r]);
#pragma GCC unroll 4
            for (int c = 0; c < kVectors; ++c)
                V::store(o + r * ldo + c * kLanes, V::fma(V::load(o + r * ldo + c * kLanes), factor, acc[r][c]));
        }
    }

    // The rows g .. g + rows - 1 of the block against the tile's keys.
    void run_group(int64_t g, int64_t rows, int64_t tile, int64_t keys) {
        const int64_t begin = visible_begin(g, tile, keys), end = visible_end(g + rows - 1, tile, keys);
        if (begin >= end) return;  // no row sees a key of this tile (the band is monotone in the row)
        const int64_t padded = round_up_to(rows, kRows);
        float* s = w_.scores;
        // S = scale · Q·Kᵀ over the panels that hold keys [begin, end).
        const F scale = V::set1(p_.scale);
        for (int64_t j = round_down_to(begin, kWidth); j < end; j += kWidth)
            for (int64_t r = 0; r < padded; r += kRows)
                score_tile<kRows>(w_.queries + (g + r) * ld_, ld_, w_.keys + j * dims_, dims_, scale, s + r * ldk_ + j, ldk_);
        for (int64_t r = 0; r < padded; ++r) softmax_row(g, r, rows, tile, keys, begin, end);
        // O = O·exp(m - m_new) + P·V.
        if (values_finite_ || !some_row_partial(g, rows, tile, keys, begin, end)) {
            for (int64_t c = 0; c < ld_; c += kWidth)
                for (int64_t r = 0; r < padded; r += kRows)
                    accumulate_tile<kRows>(s + r * ldk_, ldk_, value_panel(c), kWidth, begin, end, w_.correction + r,
                                          w_.out + (g + r) * ld_ + c, ld_);
            return;
        }
        // A non-finite v in the tile: each row multiplies only the keys it sees, so that a masked key's Inf or
        // NaN never reaches a row through 0·v.
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t row_begin = visible_begin(g + r, tile, keys), row_end = visible_end(g + r, tile, keys);
            for (int64_t c = 0; c < ld_; c += kWidth)
                accumulate_tile<1>(s + r * ldk_, ldk_, value_panel(c), kWidth, row_begin, row_end < row_begin ? row_begin : row_end,
                                   w_.correction + r, w_.out + (g + r) * ld_ + c, ld_);
        }
    }

    // Whether some row of the group sees less than the group's keys [begin, end) of the tile.
    bool some_row_partial(int64_t g, int64_t rows, int64_t tile, int64_t keys, int64_t begin, int64_t end) const {
        for (int64_t r = 0; r < rows; ++r)
            if (visible_begin(g + r, tile, keys) != begin || visible_end(g + r, tile, keys) != end) return true;
        return false;
    }

    // Row r of the group starting at block row g: mask, optional fp64 scores, softcap, ALiBi, then the online
    // softmax over the group's keys [begin, end): P in place of S, the row's correction exp(m - m_new).
    void softmax_row(int64_t g, int64_t r, int64_t rows, int64_t tile, int64_t keys, int64_t begin, int64_t end) {
        float* s = w_.scores + r * ldk_;
        const int64_t lo = round_down_to(begin, kLanes), hi = round_up_to(end, kLanes);
        if (r >= rows) {  // a padding row: no weight, O unchanged
            for (int64_t j = lo; j < hi; ++j) s[j] = 0.0f;
            w_.correction[r] = 1.0f;
            return;
        }
        const int64_t row = g + r;
        const int64_t row_begin = visible_begin(row, tile, keys);
        const int64_t row_end = max_of(row_begin, visible_end(row, tile, keys));
        for (int64_t j = lo; j < row_begin; ++j) s[j] = -kInfinity;
        for (int64_t j = row_end; j < hi; ++j) s[j] = -kInfinity;

        const double old_max = w_.row_max[row];
        double new_max = old_max;
        float offset;        // subtracted from s before exp
        int64_t done = lo;   // [lo, done) holds P relative to the old reference already
        float kept_sum = 0;  // its sum
        if (kFp32 && row_begin < row_end && needs_fp64(row, row_begin, row_end)) {
            // s in fp64: new_max is exact, and s - new_max is rounded once.
            double* exact = w_.precise;
            for (int64_t j = row_begin; j < row_end; ++j) {
                exact[j] = transform(exact_score(row, j), row, tile + j);
                new_max = exact[j] > new_max ? exact[j] : new_max;
            }
            const double reference = new_max == -double(kInfinity) ? 0.0 : new_max;
            for (int64_t j = row_begin; j < row_end; ++j) s[j] = float(exact[j] - reference);
            offset = 0.0f;
        } else {
            if (p_.softcap > 0.0f || b_.alibi_slope != 0.0f)
                for (int64_t j = row_begin; j < row_end; ++j) s[j] = float(transform(s[j], row, tile + j));
            if (old_max != -double(kInfinity)) {
                // The row keeps its reference while the tile's scores exceed it by at most the margin: no
                // maximum pass before the exp, no rescale of O. Else [done, hi) still holds scores, and the row
                // takes a new reference.
                done = exp_until(s, lo, hi, float(old_max), float(old_max + kRescaleMargin), &kept_sum);
                if (done == hi) {
                    w_.correction[r] = 1.0f;
                    w_.row_sum[row] += kept_sum;
                    return;
                }
            }
            F m = V::set1(-kInfinity);
            for (int64_t j = done; j < hi; j += kLanes) m = V::max(V::load(s + j), m);
            const double tile_max = V::reduce_max(m);
            new_max = tile_max > old_max ? tile_max : old_max;
            offset = float(new_max == -double(kInfinity) ? 0.0 : new_max);
            if (done > lo) {
                const float rescale = float(__builtin_exp(double(float(old_max)) - double(offset)));
                for (int64_t j = lo; j < done; j += kLanes) V::store(s + j, V::mul(V::load(s + j), V::set1(rescale)));
                kept_sum *= rescale;
            }
        }
        // The first key of a row has m = -inf: exp(-inf - 0) = 0 clears the zero accumulators.
        const double reference = new_max == -double(kInfinity) ? 0.0 : new_max;
        float sum;
        exp_until(s, done, hi, offset, kInfinity, &sum);
        const float correction = float(__builtin_exp(old_max - reference));
        w_.correction[r] = correction;
        w_.row_sum[row] = w_.row_sum[row] * correction + (kept_sum + sum);
        w_.row_max[row] = new_max;
    }

    // s[j] = exp(s[j] - offset) over [lo, done), `done` the first vector boundary whose next vector holds a score
    // above `limit` (NaN is not above), or hi; returns done, and *sum = Σ of the new s.
    static int64_t exp_until(float* s, int64_t lo, int64_t hi, float offset, float limit, float* sum) {
        const F subtract = V::set1(offset), bound = V::set1(limit);
        F total = V::zero();
        int64_t j = lo;
        for (; j < hi; j += kLanes) {
            const F sj = V::load(s + j);
            if (V::any_greater(sj, bound)) break;
            const F pj = V::exp(V::sub(sj, subtract));
            V::store(s + j, pj);
            total = V::add(total, pj);
        }
        *sum = V::reduce_add(total);
        return j;
    }

    // Whether row's scores over keys [begin, end) of the tile may exceed kFp32ScoreBound (or are not finite).
    bool needs_fp64(int64_t row, int64_t begin, int64_t end) const {
        const float bound2 = kFp32ScoreBound * kFp32ScoreBound;
        const float row_factor = p_.scale * p_.scale * w_.query_norm2[row];
        if (tile_key_norm2_max_ * row_factor <= bound2) return false;
        float seen_max = 0.0f;  // over the keys the row sees only, so that other keys never change its path
        for (int64_t j = begin; j < end; ++j) seen_max = w_.key_norm2[j] > seen_max ? w_.key_norm2[j] : seen_max;
        return !(seen_max * row_factor <= bound2);
    }

    // scale · q_row·k_j in fp64 from the fp32 inputs (each product exact).
    double exact_score(int64_t row, int64_t j) const {
        const float* q = w_.queries + row * ld_;
        const float* k = w_.keys + (j / kWidth) * kWidth * dims_ + j % kWidth;
        double sum = 0.0;
        for (int64_t d = 0; d < dims_; ++d) sum += double(q[d]) * double(k[d * kWidth]);
        return double(p_.scale) * sum;
    }

    // s = softcap·tanh(s / softcap), then s -= slope·|i + alibi_offset - j| (key = j within the sequence).
    double transform(double s, int64_t row, int64_t key) const {
        if (p_.softcap > 0.0f) s = double(p_.softcap) * __builtin_tanh(s / double(p_.softcap));
        if (b_.alibi_slope != 0.0f)
            s -= double(b_.alibi_slope) * double(abs_of(b_.first_row + row + b_.alibi_offset - key));
        return s;
    }

    // O = acc / l, LSE = m + log(l); a row that saw no key keeps l = 0 and gets O = 0, LSE = -inf.
    void write_rows() {
        for (int64_t r = 0; r < b_.rows; ++r) {
            const float l = w_.row_sum[r];
            const bool saw_keys = l != 0.0f;
            const float* acc = w_.out + r * ld_;
            Stored* dst = static_cast<Stored*>(b_.o) + r * b_.o_row_stride;
            for (int64_t d = 0; d < dims_; ++d) {
                const float value = saw_keys ? acc[d] / l : 0.0f;
                if constexpr (E == Element::f32) dst[d] = value;
                else dst[d] = E == Element::bf16 ? float_to_bf16(value) : float_to_fp16(value);
            }
            if (b_.lse) b_.lse[r] = saw_keys ? float(w_.row_max[r] + __builtin_log(double(l))) : -kInfinity;
        }
    }

    const FastProblem& p_;
    const FastBlock& b_;
    const FastScratch& w_;
    const int64_t dims_, ld_, ldk_;
    bool values_finite_ = true;
    float tile_key_norm2_max_ = 0.0f;
};

// One work item on vector type V.
template <class V>
void run_fast_block(const FastProblem& p, const FastBlock& b, const FastScratch& w) {
    switch (p.element) {
        case Element::f16: return FastAttention<V, Element::f16>(p, b, w).run();
        case Element::bf16: return FastAttention<V, Element::bf16>(p, b, w).run();
        case Element::f32: return FastAttention<V, Element::f32>(p, b, w).run();
    }
}

}  // namespace
}  // namespace flashsci::cpu
