// Variable-length (packed) batches for the tests: a case, where its tensors sit, the plan it configures, and
// one forward on the CPU backend. Shared by the CPU tests and the [gpu] tests (which add the CUDA forward).
#pragma once

#include <flashsci.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "reference.h"
#include "tensors.h"

namespace flashsci::test::varlen {

#define REQUIRE_OK(call)                                                                         \
    do {                                                                                         \
        const flashsci_status_t status_ = (call);                                                \
        INFO(#call << ": " << flashsci_status_string(status_) << ": " << flashsci_last_error()); \
        REQUIRE(status_ == FLASHSCI_STATUS_SUCCESS);                                             \
    } while (0)

inline constexpr int64_t kOutputRowPad = 8;  // elements after each padded output row, never written

// How q, k, v and o are stored.
enum class Storage {
    contiguous,  // q, k, v, o each [total, heads, head_dim]
    packed_qkv,  // q, k, v slices of one [total, heads_q + 2·heads_kv, head_dim] tensor; o rows padded
};

struct Case {
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_FLOAT32;
    std::vector<int64_t> lens_q, lens_k;  // per sequence; 0 allowed
    int64_t heads_q = 4, heads_kv = 2, head_dim = 64;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    Storage storage = Storage::contiguous;
    float scale = 0.0f;  // 0: the default 1/sqrt(head_dim)
    bool with_lse = true;
    int64_t window_left = -1, window_right = -1;
    float softcap = 0.0f;
    std::vector<float> alibi_slopes;           // [heads_q], or empty: off
    int64_t spare_q = 0, spare_k = 0;          // tokens past the last sequence (cu_seqlens[batch] < total)
    int64_t max_extra_q = 0, max_extra_k = 0;  // max_seqlen above the longest sequence (kept <= total)
    flashsci_precision_t precision = FLASHSCI_PRECISION_DEFAULT;  // fp32 plans only
};

inline int64_t batch_of(const Case& c) { return int64_t(c.lens_q.size()); }

inline std::vector<int32_t> offsets(const std::vector<int64_t>& lens) {
    std::vector<int32_t> cu{0};
    for (const int64_t len : lens) cu.push_back(int32_t(cu.back() + len));
    return cu;
}

inline VarlenOffsets offsets_of(const Case& c) { return {offsets(c.lens_q), offsets(c.lens_k)}; }

// The numbers of flashsci_plan_set_varlen_shape.
struct Totals {
    int64_t total_q, total_k, max_q, max_k;
};

inline Totals totals_of(const Case& c) {
    REQUIRE(c.lens_q.size() == c.lens_k.size());
    const auto sum = [](const std::vector<int64_t>& lens) { return std::accumulate(lens.begin(), lens.end(), int64_t{0}); };
    const auto longest = [](const std::vector<int64_t>& lens) { return *std::max_element(lens.begin(), lens.end()); };
    Totals t{sum(c.lens_q) + c.spare_q, sum(c.lens_k) + c.spare_k, 0, 0};
    t.total_q = std::max<int64_t>(t.total_q, 1), t.total_k = std::max<int64_t>(t.total_k, 1);
    t.max_q = std::clamp<int64_t>(longest(c.lens_q) + c.max_extra_q, 1, t.total_q);
    t.max_k = std::clamp<int64_t>(longest(c.lens_k) + c.max_extra_k, 1, t.total_k);
    return t;
}

inline const char* mask_label(flashsci_mask_t mask) {
    switch (mask) {
        case FLASHSCI_MASK_NONE: return "none";
        case FLASHSCI_MASK_CAUSAL: return "causal";
        case FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: return "causal_bottom_right";
    }
    return "?";
}

inline std::string describe(const Case& c) {
    std::ostringstream s;
    s << dtype_name(c.dtype) << " lens (q/k)";
    for (size_t b = 0; b < c.lens_q.size(); ++b) s << " " << c.lens_q[b] << "/" << c.lens_k[b];
    const Totals t = totals_of(c);
    s << ", totals " << t.total_q << "/" << t.total_k << ", max " << t.max_q << "/" << t.max_k << ", heads "
      << c.heads_q << "/" << c.heads_kv << ", head_dim " << c.head_dim << ", mask " << mask_label(c.mask)
      << (c.storage == Storage::packed_qkv ? ", packed qkv" : ", contiguous");
    if (c.scale > 0.0f) s << ", scale " << c.scale;
    if (!c.with_lse) s << ", no lse";
    if (c.window_left >= 0 || c.window_right >= 0) s << ", window (" << c.window_left << ", " << c.window_right << ")";
    if (c.softcap > 0.0f) s << ", softcap " << c.softcap;
    if (!c.alibi_slopes.empty()) s << ", alibi";
    if (c.precision != FLASHSCI_PRECISION_DEFAULT) s << ", precision " << int(c.precision);
    return s.str();
}

// The reference's view of the case's window, softcap and ALiBi slope of query head h.
inline Features features_of(const Case& c, int64_t h) {
    return {c.window_left, c.window_right, c.softcap, c.alibi_slopes.empty() ? 0.0 : c.alibi_slopes[size_t(h)]};
}

inline double scale_of(const Case& c) {
    return c.scale > 0.0f ? double(c.scale) : 1.0 / std::sqrt(double(c.head_dim));
}

// Where q, k and v sit in one input buffer, and how o is laid out in its own (batch strides unused: 0).
struct Placement {
    Layout q, k, v, o;
    size_t input_count, output_count, lse_count;
};

inline Placement place(const Case& c) {
    const Totals t = totals_of(c);
    const int64_t d = c.head_dim;
    if (c.storage == Storage::packed_qkv) {
        REQUIRE(t.total_q == t.total_k);
        const int64_t row = (c.heads_q + 2 * c.heads_kv) * d, o_row = c.heads_q * d + kOutputRowPad;
        return {{0, row, d, 0},
                {0, row, d, c.heads_q * d},
                {0, row, d, (c.heads_q + c.heads_kv) * d},
                {0, o_row, d, 0},
                size_t(t.total_q * row),
                size_t(t.total_q * o_row),
                size_t(c.heads_q * t.total_q)};
    }
    const int64_t q_count = t.total_q * c.heads_q * d, kv_count = t.total_k * c.heads_kv * d;
    return {{0, c.heads_q * d, d, 0},
            {0, c.heads_kv * d, d, q_count},
            {0, c.heads_kv * d, d, q_count + kv_count},
            {0, c.heads_q * d, d, 0},
            size_t(q_count + 2 * kv_count),
            size_t(q_count),
            size_t(c.heads_q * t.total_q)};
}

// Sets the plan's varlen shape, dtype, mask, scale, features and (for packed storage) strides.
inline void configure(flashsci_plan_t plan, const Case& c, const Placement& pl) {
    const Totals t = totals_of(c);
    REQUIRE_OK(flashsci_plan_set_varlen_shape(plan, batch_of(c), t.total_q, t.total_k, t.max_q, t.max_k, c.heads_q,
                                              c.heads_kv, c.head_dim));
    REQUIRE_OK(flashsci_plan_set_dtype(plan, c.dtype));
    REQUIRE_OK(flashsci_plan_set_mask(plan, c.mask));
    if (c.scale > 0.0f) REQUIRE_OK(flashsci_plan_set_softmax_scale(plan, c.scale));
    REQUIRE_OK(flashsci_plan_set_window(plan, c.window_left, c.window_right));
    REQUIRE_OK(flashsci_plan_set_softcap(plan, c.softcap));
    REQUIRE_OK(flashsci_plan_set_alibi_slopes(plan, c.alibi_slopes.empty() ? nullptr : c.alibi_slopes.data()));
    REQUIRE_OK(flashsci_plan_set_precision(plan, c.precision));
    if (c.storage == Storage::contiguous) return;
    const std::pair<flashsci_tensor_t, Layout> strides[] = {
        {FLASHSCI_TENSOR_Q, pl.q}, {FLASHSCI_TENSOR_K, pl.k}, {FLASHSCI_TENSOR_V, pl.v}, {FLASHSCI_TENSOR_O, pl.o}};
    for (const auto& [tensor, layout] : strides)
        REQUIRE_OK(flashsci_plan_set_strides(plan, tensor, 0, layout.seq, layout.head));
}

struct Outputs {
    HostTensor o;
    std::vector<float> lse;
};

// O and LSE with every byte 0xFF (NaN): an element the forward does not write stays so.
inline Outputs poisoned_outputs(const Case& c, const Placement& pl) {
    Outputs out{HostTensor(c.dtype, pl.output_count), std::vector<float>(pl.lse_count)};
    out.o.poison();
    std::memset(out.lse.data(), 0xff, out.lse.size() * sizeof(float));
    return out;
}

inline bool lse_poisoned(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits == 0xffffffffu;
}

inline bool element_poisoned(const HostTensor& t, size_t i) {
    const size_t bytes = dtype_bytes(t.dtype());
    const auto* p = static_cast<const unsigned char*>(t.data()) + i * bytes;
    return std::all_of(p, p + bytes, [](unsigned char x) { return x == 0xff; });
}

class CpuPlan {
public:
    CpuPlan() { REQUIRE_OK(flashsci_plan_create(&plan_, FLASHSCI_BACKEND_CPU)); }
    ~CpuPlan() { flashsci_plan_destroy(plan_); }
    CpuPlan(const CpuPlan&) = delete;
    CpuPlan& operator=(const CpuPlan&) = delete;
    operator flashsci_plan_t() const { return plan_; }

private:
    flashsci_plan_t plan_ = nullptr;
};

// One forward of the case on the CPU backend, on a fresh plan and poisoned outputs.
inline Outputs run_cpu(const Case& c, const Placement& pl, const HostTensor& in) {
    CpuPlan plan;
    configure(plan, c, pl);
    Outputs out = poisoned_outputs(c, pl);
    const VarlenOffsets cu = offsets_of(c);
    const auto* base = static_cast<const unsigned char*>(in.data());
    const size_t bytes = dtype_bytes(c.dtype);
    REQUIRE_OK(flashsci_forward_varlen(plan, base + size_t(pl.q.base) * bytes, base + size_t(pl.k.base) * bytes,
                                       base + size_t(pl.v.base) * bytes, out.o.data(),
                                       c.with_lse ? out.lse.data() : nullptr, cu.q.data(), cu.k.data(), nullptr, 0,
                                       nullptr));
    return out;
}

// Every token a sequence owns (its rows of O and LSE), as (sequence, row within it, token) triples.
struct Token {
    int64_t b, i, token;
};

inline std::vector<Token> tokens_of(const Case& c) {
    const VarlenOffsets cu = offsets_of(c);
    std::vector<Token> tokens;
    for (int64_t b = 0; b < batch_of(c); ++b)
        for (int64_t i = 0; i < cu.len_q(b); ++i) tokens.push_back({b, i, cu.q[size_t(b)] + i});
    return tokens;
}

// Elements of O's buffer and entries of LSE that belong to some sequence's rows.
struct Owned {
    std::vector<char> o, lse;
};

inline Owned owned_elements(const Case& c, const Placement& pl) {
    const Totals t = totals_of(c);
    Owned owned{std::vector<char>(pl.output_count, 0), std::vector<char>(pl.lse_count, 0)};
    for (const Token& tok : tokens_of(c))
        for (int64_t h = 0; h < c.heads_q; ++h) {
            owned.lse[size_t(h * t.total_q + tok.token)] = 1;
            for (int64_t d = 0; d < c.head_dim; ++d) owned.o[pl.o.offset(0, tok.token, h) + size_t(d)] = 1;
        }
    return owned;
}

// ALiBi slopes as in the ALiBi paper: 2^(-8h/heads) for head h = 1..heads.
inline std::vector<float> alibi_slopes(int64_t heads) {
    constexpr double kAlibiExponent = 8.0;
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-kAlibiExponent * double(h) / double(heads))));
    return slopes;
}

}  // namespace flashsci::test::varlen
