// The attention problem as kernels see it: plain numbers and pointers, no ABI types.
#pragma once

#include <cstdint>

namespace flashsci::kernels {

enum class Element : int { f16, bf16, f32 };

// Which keys a query row may see; see causal_key_limit().
enum class Mask : int { none, causal_top_left, causal_bottom_right };

// Element strides of a [batch, seqlen, heads, head_dim] tensor (head_dim stride is 1).
struct Strides {
    int64_t batch;
    int64_t seq;
    int64_t head;
};

struct Problem {
    const void* q;  // [batch, seqlen_q, heads_q, head_dim]
    const void* k;  // [batch, seqlen_k, heads_kv, head_dim]
    const void* v;  // [batch, seqlen_k, heads_kv, head_dim]
    void* o;        // [batch, seqlen_q, heads_q, head_dim]
    float* lse;     // [batch, heads_q, seqlen_q] contiguous, or null
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
    Strides q_strides, k_strides, v_strides, o_strides;
    float scale;
    Mask mask;
    Element element;
    int64_t window_left, window_right;  // local attention around the window diagonal; -1: unbounded on that side
    float softcap;                      // s = softcap·tanh(s / softcap) after the scale; 0: off
    const float* alibi_slopes;          // [heads_q] in the backend's memory, s -= slope[h]·|i + seqlen_k - seqlen_q - j|; null: off
};

// Row i sees key j iff j <= i + causal_diagonal(p) (every key without a causal mask).
inline int64_t causal_diagonal(const Problem& p) {
    switch (p.mask) {
        case Mask::causal_top_left: return 0;
        case Mask::causal_bottom_right: return p.seqlen_k - p.seqlen_q;
        case Mask::none: break;
    }
    return p.seqlen_k;
}

// The diagonal the window is measured from: i for top-left causal, else i + seqlen_k - seqlen_q (FlashAttention-2).
inline int64_t window_diagonal(const Problem& p) {
    return p.mask == Mask::causal_top_left ? 0 : p.seqlen_k - p.seqlen_q;
}

// Row i sees the keys j with i + first <= j <= i + last and 0 <= j < seqlen_k: the causal rule and the window.
struct KeyBand {
    int64_t first, last;
};

inline KeyBand key_band(const Problem& p) {
    const int64_t reach = p.seqlen_q + p.seqlen_k;  // a window side wider than this bounds nothing (and cannot overflow)
    const int64_t diagonal = window_diagonal(p);
    KeyBand band{-reach, causal_diagonal(p)};
    if (p.window_left >= 0) band.first = diagonal - (p.window_left < reach ? p.window_left : reach);
    if (p.window_right >= 0) {
        const int64_t right = diagonal + (p.window_right < reach ? p.window_right : reach);
        band.last = right < band.last ? right : band.last;
    }
    return band;
}

// Whether scores need more than the scale: a softcap or an ALiBi bias.
inline bool has_score_transform(const Problem& p) { return p.softcap > 0.0f || p.alibi_slopes != nullptr; }

inline int element_bytes(Element e) { return e == Element::f32 ? 4 : 2; }

}  // namespace flashsci::kernels
