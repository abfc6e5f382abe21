// The attention problem as kernels see it: plain numbers and pointers, no ABI types.
#pragma once

#include <cstdint>

// The per-sequence helpers below run on the host (CPU backend, launchers) and in CUDA kernels.
#if defined(__CUDACC__)
#define FLASHSCI_HOST_DEVICE __host__ __device__
#else
#define FLASHSCI_HOST_DEVICE
#endif

namespace flashsci::kernels {

enum class Element : int { f16, bf16, f32 };

// Which keys a query row may see; see causal_diagonal().
enum class Mask : int { none, causal_top_left, causal_bottom_right };

// How fp32 inputs are multiplied (flashsci_precision_t): fp32-level accuracy by the fastest means (3xTF32 on tensor
// cores), one TF32 pass, or fp32 FMAs only. fp16/bf16 problems ignore it.
enum class Precision : int { fp32_level, tf32, ieee };

// Element strides of a [batch, seqlen, heads, head_dim] tensor (head_dim stride is 1). Variable-length
// problems: batch is 0 and seq is the stride between the tokens of the packed [total, heads, head_dim] tensor.
struct Strides {
    int64_t batch;
    int64_t seq;
    int64_t head;
};

// Dense: `batch` sequences of seqlen_q queries and seqlen_k keys each. Variable-length (varlen): `batch`
// sequences packed along one token axis, sequence b owning q/o rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1 of
// total_q and k/v rows cu_seqlens_k[b] .. cu_seqlens_k[b+1]-1 of total_k; seqlen_q and seqlen_k are then the
// longest sequences (max_seqlen), which bound the grid.
struct Problem {
    const void* q;  // [batch, seqlen_q, heads_q, head_dim]; varlen [total_q, heads_q, head_dim]
    const void* k;  // [batch, seqlen_k, heads_kv, head_dim]; varlen [total_k, heads_kv, head_dim]
    const void* v;  // [batch, seqlen_k, heads_kv, head_dim]; varlen [total_k, heads_kv, head_dim]
    void* o;        // [batch, seqlen_q, heads_q, head_dim]; varlen [total_q, heads_q, head_dim]
    float* lse;     // [batch, heads_q, seqlen_q] contiguous; varlen [heads_q, total_q]; or null
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
    Strides q_strides, k_strides, v_strides, o_strides;
    float scale;
    Mask mask;
    Element element;
    int64_t window_left, window_right;  // local attention around the window diagonal; -1: unbounded on that side
    float softcap;                      // s = softcap·tanh(s / softcap) after the scale; 0: off
    const float* alibi_slopes;          // [heads_q] in the backend's memory, s -= slope[h]·|i + len_k - len_q - j|; null: off
    bool varlen;                        // a packed variable-length batch (flashsci_forward_varlen)
    int64_t total_q, total_k;           // varlen: rows of the packed q/o and k/v; 0 for dense problems
    const int32_t* cu_seqlens_q;        // varlen: [batch + 1] row offsets in the backend's memory; null for dense
    const int32_t* cu_seqlens_k;
    Precision precision;                // fp32 inputs only
};

// The backward's tensors beside its Problem (flashsci_backward): there q, k, v are the inputs, o and lse the
// forward's outputs for them (read, not written), and these are dout = dL/dO (laid out like o) and the gradients
// dq (like q), dk and dv (like k and v), each in the problem's element type and written whole.
struct Gradients {
    const void* dout;
    void* dq;
    void* dk;
    void* dv;
    Strides dout_strides, dq_strides, dk_strides, dv_strides;
    bool deterministic;  // bitwise-identical dq, dk, dv run to run: no atomics, a fixed reduction order
};

// One sequence of a problem: its query rows are q_start .. q_start + len_q - 1 of its (packed) tensor, its keys
// k_start .. k_start + len_k - 1; dense sequences start at row 0 (their batch stride locates them).
struct Sequence {
    int64_t q_start, k_start, len_q, len_k;
};

namespace detail {
FLASHSCI_HOST_DEVICE inline int64_t clamp(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : x > hi ? hi : x; }
}  // namespace detail

// Sequence b. Varlen offsets are clamped so that no value of them reaches a row outside [0, total) or makes a
// sequence longer than the maxima: the CUDA backend reads them on the device, unvalidated (the CPU backend has
// validated them, so there the clamps change nothing).
FLASHSCI_HOST_DEVICE inline Sequence sequence(const Problem& p, int64_t b) {
    if (!p.varlen) return {0, 0, p.seqlen_q, p.seqlen_k};
    const int64_t q_begin = detail::clamp(p.cu_seqlens_q[b], 0, p.total_q);
    const int64_t q_end = detail::clamp(p.cu_seqlens_q[b + 1], q_begin, p.total_q);
    const int64_t k_begin = detail::clamp(p.cu_seqlens_k[b], 0, p.total_k);
    const int64_t k_end = detail::clamp(p.cu_seqlens_k[b + 1], k_begin, p.total_k);
    const int64_t len_q = q_end - q_begin < p.seqlen_q ? q_end - q_begin : p.seqlen_q;
    const int64_t len_k = k_end - k_begin < p.seqlen_k ? k_end - k_begin : p.seqlen_k;
    return {q_begin, k_begin, len_q, len_k};
}

// Where row i of sequence b, query head h, keeps its LSE: [batch, heads_q, seqlen_q], or [heads_q, total_q] varlen.
FLASHSCI_HOST_DEVICE inline int64_t lse_index(const Problem& p, const Sequence& s, int64_t b, int64_t h, int64_t i) {
    return p.varlen ? h * p.total_q + s.q_start + i : (b * p.heads_q + h) * p.seqlen_q + i;
}

// Row i of a sequence with len_q queries and len_k keys sees key j iff j <= i + causal_diagonal(...) (every key
// without a causal mask).
FLASHSCI_HOST_DEVICE inline int64_t causal_diagonal(const Problem& p, int64_t len_q, int64_t len_k) {
    switch (p.mask) {
        case Mask::causal_top_left: return 0;
        case Mask::causal_bottom_right: return len_k - len_q;
        case Mask::none: break;
    }
    return len_k;
}

// The dense problem's causal_diagonal: every sequence has seqlen_q queries and seqlen_k keys.
FLASHSCI_HOST_DEVICE inline int64_t causal_diagonal(const Problem& p) {
    return causal_diagonal(p, p.seqlen_q, p.seqlen_k);
}

// The diagonal the window is measured from: i for top-left causal, else i + len_k - len_q (FlashAttention-2).
FLASHSCI_HOST_DEVICE inline int64_t window_diagonal(const Problem& p, int64_t len_q, int64_t len_k) {
    return p.mask == Mask::causal_top_left ? 0 : len_k - len_q;
}

FLASHSCI_HOST_DEVICE inline int64_t window_diagonal(const Problem& p) {
    return window_diagonal(p, p.seqlen_q, p.seqlen_k);
}

// Row i sees the keys j with i + first <= j <= i + last and 0 <= j < len_k: the causal rule and the window.
struct KeyBand {
    int64_t first, last;
};

// The band of a sequence with len_q queries and len_k keys.
FLASHSCI_HOST_DEVICE inline KeyBand key_band(const Problem& p, int64_t len_q, int64_t len_k) {
    const int64_t reach = len_q + len_k;  // a window side wider than this bounds nothing (and cannot overflow)
    const int64_t diagonal = window_diagonal(p, len_q, len_k);
    KeyBand band{-reach, causal_diagonal(p, len_q, len_k)};
    if (p.window_left >= 0) band.first = diagonal - (p.window_left < reach ? p.window_left : reach);
    if (p.window_right >= 0) {
        const int64_t right = diagonal + (p.window_right < reach ? p.window_right : reach);
        band.last = right < band.last ? right : band.last;
    }
    return band;
}

// The dense problem's band.
FLASHSCI_HOST_DEVICE inline KeyBand key_band(const Problem& p) { return key_band(p, p.seqlen_q, p.seqlen_k); }

// The ALiBi distance of row i from key j is |i + alibi_offset(...) - j|, from the bottom-right diagonal.
FLASHSCI_HOST_DEVICE inline int64_t alibi_offset(int64_t len_q, int64_t len_k) { return len_k - len_q; }

// Whether scores need more than the scale: a softcap or an ALiBi bias.
FLASHSCI_HOST_DEVICE inline bool has_score_transform(const Problem& p) {
    return p.softcap > 0.0f || p.alibi_slopes != nullptr;
}

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = exp2(x·log2(e))

// The softmax scale's derived forms, the same on every CUDA path. The kernels' softmax takes scores s that are raw
// q·k, or with a softcap or ALiBi the final logits (which then carry the scale): exp(score_scale·s) =
// exp2(scale_log2·s). The softcap's tanh takes scale·q·k / softcap = q·k·cap_scale.
struct ScoreScales {
    float score_scale;  // the scale, or 1 for transformed scores
    float scale_log2;   // score_scale·log2(e)
    float cap_scale;    // scale / softcap; 0 without a softcap
};
FLASHSCI_HOST_DEVICE inline ScoreScales score_scales(const Problem& p) {
    const float score_scale = has_score_transform(p) ? 1.0f : p.scale;
    return {score_scale, score_scale * kLog2e, p.softcap > 0.0f ? p.scale / p.softcap : 0.0f};
}

inline int element_bytes(Element e) { return e == Element::f32 ? 4 : 2; }

}  // namespace flashsci::kernels
