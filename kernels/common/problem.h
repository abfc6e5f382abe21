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

inline int element_bytes(Element e) { return e == Element::f32 ? 4 : 2; }

}  // namespace flashsci::kernels
