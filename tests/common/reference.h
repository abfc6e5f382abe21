// The naive fp64 reference: one query row at a time, straight from the definition.
#pragma once

#include <flashsci.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#include "tensors.h"

namespace flashsci::test {

// Element strides of a [batch, seqlen, heads, head_dim] tensor, and where its element [0, 0, 0, 0] is.
struct Layout {
    int64_t batch, seq, head;
    int64_t base = 0;
    size_t offset(int64_t b, int64_t s, int64_t h) const { return size_t(base + b * batch + s * seq + h * head); }
};

inline Layout contiguous_layout(int64_t seqlen, int64_t heads, int64_t head_dim) {
    return {seqlen * heads * head_dim, heads * head_dim, head_dim};
}

// [batch, heads, seqlen, head_dim] contiguous, described as strides of the BSHD view.
inline Layout bhsd_layout(int64_t seqlen, int64_t heads, int64_t head_dim) {
    return {heads * seqlen * head_dim, head_dim, seqlen * head_dim};
}

struct Shape {
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
};

// Row i sees key j iff j <= i + diagonal.
inline int64_t mask_diagonal(flashsci_mask_t mask, const Shape& s) {
    switch (mask) {
        case FLASHSCI_MASK_CAUSAL: return 0;
        case FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: return s.seqlen_k - s.seqlen_q;
        case FLASHSCI_MASK_NONE: break;
    }
    return s.seqlen_k;
}

// The optional score features: a window around the diagonal, a softcap, an ALiBi slope (off by default).
struct Features {
    int64_t window_left = -1, window_right = -1;  // -1: unbounded
    double softcap = 0;                           // 0: off
    double alibi_slope = 0;                       // of the row's query head; 0: off
};

// The diagonal a window is measured from (FlashAttention-2): i for top-left causal, else bottom-right.
inline int64_t window_diagonal(flashsci_mask_t mask, const Shape& s) {
    return mask == FLASHSCI_MASK_CAUSAL ? 0 : s.seqlen_k - s.seqlen_q;
}

// The keys row i sees under the mask and the window, straight from the definition: [first, last], none if last < first.
struct KeyRange {
    int64_t first, last;
};

inline KeyRange visible_keys(const Shape& s, flashsci_mask_t mask, const Features& f, int64_t i) {
    const int64_t c = i + window_diagonal(mask, s);
    KeyRange r{0, std::min(s.seqlen_k - 1, i + mask_diagonal(mask, s))};
    if (f.window_left >= 0) r.first = std::max(r.first, c - f.window_left);
    if (f.window_right >= 0) r.last = std::min(r.last, c + f.window_right);
    return r;
}

struct RowResult {
    std::vector<double> out;  // head_dim values
    double lse;               // natural log; -inf when the row sees no key
};

// O[b, i, h, :] and LSE[b, h, i] in fp64 from the stored (already rounded) inputs.
inline RowResult reference_row(const Shape& s, flashsci_mask_t mask, double scale, const HostTensor& q,
                               const Layout& lq, const HostTensor& k, const Layout& lk, const HostTensor& v,
                               const Layout& lv, int64_t b, int64_t h, int64_t i, const Features& f = {}) {
    const int64_t kv_head = h / (s.heads_q / s.heads_kv);
    RowResult r{std::vector<double>(size_t(s.head_dim), 0.0), -std::numeric_limits<double>::infinity()};
    const KeyRange range = visible_keys(s, mask, f, i);
    std::vector<int64_t> keys;
    for (int64_t j = range.first; j <= range.last; ++j) keys.push_back(j);
    std::vector<double> scores;
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j : keys) {
        double dot = 0;
        for (int64_t d = 0; d < s.head_dim; ++d)
            dot += q.get(lq.offset(b, i, h) + size_t(d)) * k.get(lk.offset(b, j, kv_head) + size_t(d));
        double score = scale * dot;
        if (f.softcap > 0) score = f.softcap * std::tanh(score / f.softcap);
        score -= f.alibi_slope * double(std::llabs(i + s.seqlen_k - s.seqlen_q - j));
        scores.push_back(score);
        max_score = std::max(max_score, score);
    }
    double sum = 0;
    for (size_t n = 0; n < keys.size(); ++n) {
        double p = std::exp(scores[n] - max_score);
        sum += p;
        for (int64_t d = 0; d < s.head_dim; ++d) r.out[size_t(d)] += p * v.get(lv.offset(b, keys[n], kv_head) + size_t(d));
    }
    for (double& x : r.out) x /= sum;
    r.lse = max_score + std::log(sum);
    return r;
}

// Variable-length batches: sequence b of a packed batch is a dense problem of its own (batch 1, its own lengths)
// whose row 0 is row cu_seqlens[b] of the packed tensors. lq, lk, lv describe the packed [total, heads, head_dim]
// tensors (their batch stride is not used).
struct VarlenOffsets {
    std::vector<int32_t> q, k;  // cu_seqlens_q, cu_seqlens_k: [batch + 1]
    int64_t len_q(int64_t b) const { return q[size_t(b + 1)] - q[size_t(b)]; }
    int64_t len_k(int64_t b) const { return k[size_t(b + 1)] - k[size_t(b)]; }
};

// Row i of sequence b, query head h: O[cu_q[b] + i, h, :] and LSE[h, cu_q[b] + i] in fp64.
inline RowResult reference_varlen_row(const VarlenOffsets& cu, int64_t heads_q, int64_t heads_kv, int64_t head_dim,
                                      flashsci_mask_t mask, double scale, const HostTensor& q, const Layout& lq,
                                      const HostTensor& k, const Layout& lk, const HostTensor& v, const Layout& lv,
                                      int64_t b, int64_t h, int64_t i, const Features& f = {}) {
    const Shape s{1, cu.len_q(b), cu.len_k(b), heads_q, heads_kv, head_dim};
    const auto from_row = [](Layout l, int64_t row) {
        l.base += row * l.seq;
        l.batch = 0;
        return l;
    };
    const int64_t q_row = cu.q[size_t(b)], k_row = cu.k[size_t(b)];
    return reference_row(s, mask, scale, q, from_row(lq, q_row), k, from_row(lk, k_row), v, from_row(lv, k_row), 0,
                         h, i, f);
}

// ALiBi slopes as in the ALiBi paper: 2^(-8h/heads) for head h = 1..heads.
inline std::vector<float> geometric_alibi_slopes(int64_t heads) {
    constexpr double kAlibiExponent = 8.0;
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-kAlibiExponent * double(h) / double(heads))));
    return slopes;
}

// The backward's reference: the gradients of O = softmax(S)·V in fp64, straight from the definition, on fp64
// tensors stored contiguous [batch, seqlen, heads, head_dim] (gather() reads a HostTensor into that form).
struct DenseProblem {
    Shape shape;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    double scale = 1;
    Features features;          // window and softcap; its alibi_slope applies to every head unless slopes is set
    std::vector<double> slopes;  // ALiBi slope per query head, or empty
    double slope(int64_t h) const { return slopes.empty() ? features.alibi_slope : slopes[size_t(h)]; }
};

// Element [b, i, h, 0] of a contiguous [batch, seqlen, heads, head_dim] tensor.
inline size_t dense_index(int64_t seqlen, int64_t heads, int64_t head_dim, int64_t b, int64_t i, int64_t h) {
    return size_t(((b * seqlen + i) * heads + h) * head_dim);
}

// A [batch, seqlen, heads, head_dim] tensor stored under `layout`, as contiguous fp64.
inline std::vector<double> gather(const HostTensor& t, const Layout& layout, int64_t batch, int64_t seqlen,
                                  int64_t heads, int64_t head_dim) {
    std::vector<double> out(size_t(batch * seqlen * heads * head_dim));
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < seqlen; ++i)
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t d = 0; d < head_dim; ++d)
                    out[dense_index(seqlen, heads, head_dim, b, i, h) + size_t(d)] =
                        t.get(layout.offset(b, i, h) + size_t(d));
    return out;
}

// Row i of query head h in sequence b: its visible keys, the tanh of each capped score (0 without a softcap) and
// the softmax P over them.
struct ReferenceRowSoftmax {
    std::vector<int64_t> keys;
    std::vector<double> tanh_of_score, probability;
};

inline ReferenceRowSoftmax reference_softmax(const DenseProblem& a, const std::vector<double>& q,
                                             const std::vector<double>& k, int64_t b, int64_t h, int64_t i) {
    const Shape& s = a.shape;
    const int64_t kv_head = h / (s.heads_q / s.heads_kv);
    ReferenceRowSoftmax row;
    const KeyRange range = visible_keys(s, a.mask, a.features, i);
    std::vector<double> scores;
    double max_score = -std::numeric_limits<double>::infinity();
    for (int64_t j = range.first; j <= range.last; ++j) {
        const double* q_row = &q[dense_index(s.seqlen_q, s.heads_q, s.head_dim, b, i, h)];
        const double* k_row = &k[dense_index(s.seqlen_k, s.heads_kv, s.head_dim, b, j, kv_head)];
        double dot = 0;
        for (int64_t d = 0; d < s.head_dim; ++d) dot += q_row[d] * k_row[d];
        double score = a.scale * dot, t = 0;
        if (a.features.softcap > 0) {
            t = std::tanh(score / a.features.softcap);
            score = a.features.softcap * t;
        }
        score -= a.slope(h) * double(std::llabs(i + s.seqlen_k - s.seqlen_q - j));
        row.keys.push_back(j);
        row.tanh_of_score.push_back(t);
        scores.push_back(score);
        max_score = std::max(max_score, score);
    }
    double sum = 0;
    for (double score : scores) sum += std::exp(score - max_score);
    for (double score : scores) row.probability.push_back(std::exp(score - max_score) / sum);
    return row;
}

// O in fp64, contiguous [batch, seqlen_q, heads_q, head_dim]; 0 for a row that sees no key.
inline std::vector<double> reference_output(const DenseProblem& a, const std::vector<double>& q,
                                            const std::vector<double>& k, const std::vector<double>& v) {
    const Shape& s = a.shape;
    std::vector<double> o(q.size(), 0.0);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const ReferenceRowSoftmax row = reference_softmax(a, q, k, b, h, i);
                double* out = &o[dense_index(s.seqlen_q, s.heads_q, s.head_dim, b, i, h)];
                for (size_t n = 0; n < row.keys.size(); ++n) {
                    const int64_t kv_head = h / (s.heads_q / s.heads_kv);
                    const double* v_row = &v[dense_index(s.seqlen_k, s.heads_kv, s.head_dim, b, row.keys[n], kv_head)];
                    for (int64_t d = 0; d < s.head_dim; ++d) out[d] += row.probability[n] * v_row[d];
                }
            }
    return o;
}

struct ReferenceGradients {
    std::vector<double> dq, dk, dv;  // contiguous, shaped like q, k, v
};

// dL/dQ, dL/dK, dL/dV for dL/dO = dout: per row, D = dO·O, dP_j = dO·v_j, dS_j = P_j·(dP_j − D)·(1 − tanh²),
// dq += scale·dS_j·k_j, dk_j += scale·dS_j·q, dv_j += P_j·dO (each kv head summing its group's query heads).
inline ReferenceGradients reference_gradients(const DenseProblem& a, const std::vector<double>& q,
                                              const std::vector<double>& k, const std::vector<double>& v,
                                              const std::vector<double>& dout) {
    const Shape& s = a.shape;
    ReferenceGradients g{std::vector<double>(q.size(), 0.0), std::vector<double>(k.size(), 0.0),
                         std::vector<double>(v.size(), 0.0)};
    const int64_t group = s.heads_q / s.heads_kv;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const ReferenceRowSoftmax row = reference_softmax(a, q, k, b, h, i);
                const size_t q_at = dense_index(s.seqlen_q, s.heads_q, s.head_dim, b, i, h);
                std::vector<double> o(size_t(s.head_dim), 0.0);
                for (size_t n = 0; n < row.keys.size(); ++n)
                    for (int64_t d = 0; d < s.head_dim; ++d)
                        o[size_t(d)] += row.probability[n] *
                                        v[dense_index(s.seqlen_k, s.heads_kv, s.head_dim, b, row.keys[n], h / group) +
                                          size_t(d)];
                double row_term = 0;  // D = dO·O
                for (int64_t d = 0; d < s.head_dim; ++d) row_term += dout[q_at + size_t(d)] * o[size_t(d)];
                for (size_t n = 0; n < row.keys.size(); ++n) {
                    const size_t kv_at = dense_index(s.seqlen_k, s.heads_kv, s.head_dim, b, row.keys[n], h / group);
                    double dp = 0;
                    for (int64_t d = 0; d < s.head_dim; ++d) dp += dout[q_at + size_t(d)] * v[kv_at + size_t(d)];
                    const double t = row.tanh_of_score[n];
                    const double ds = row.probability[n] * (dp - row_term) * (1 - t * t);
                    for (int64_t d = 0; d < s.head_dim; ++d) {
                        g.dq[q_at + size_t(d)] += a.scale * ds * k[kv_at + size_t(d)];
                        g.dk[kv_at + size_t(d)] += a.scale * ds * q[q_at + size_t(d)];
                        g.dv[kv_at + size_t(d)] += row.probability[n] * dout[q_at + size_t(d)];
                    }
                }
            }
    return g;
}

}  // namespace flashsci::test
