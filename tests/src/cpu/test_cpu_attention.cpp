// The CPU backend against the fp64 reference, through the public API, on fresh random inputs.
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "reference.h"
#include "tensors.h"

using flashsci::test::HostTensor;
using flashsci::test::Layout;
using flashsci::test::Shape;

namespace {

// Output: max |O - O_ref| / max |O_ref|. 16-bit outputs are rounded to their dtype (bf16 ~4e-3).
constexpr double kFp32Tolerance = 1e-5;
constexpr double kHalfTolerance = 1e-2;
// LSE: |lse - lse_ref| / max(1, |lse_ref|).
constexpr double kFp32LseTolerance = 1e-4;
constexpr double kHalfLseTolerance = 1e-3;
// Rows per (batch, head) compared with the reference when it would be slow to compare all.
constexpr int64_t kSampledRows = 96;
constexpr int64_t kEveryRow = std::numeric_limits<int64_t>::max();
// Large-magnitude inputs: scores reach thousands, so exp() without the running max overflows.
constexpr float kLargeInputRange = 30.0f;
// Extra elements between rows, heads and sequences of the padded layout.
constexpr int64_t kPadding = 8;

constexpr flashsci_dtype_t kAllDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};

// How one tensor is laid out in memory.
enum class Arrangement {
    contiguous,  // [batch, seqlen, heads, head_dim]
    bhsd,        // [batch, heads, seqlen, head_dim]
    padded,      // contiguous order with gaps between heads, rows and sequences
    packed_qkv,  // one [batch, seqlen, 3, heads, head_dim] tensor holding q, k, v
};

// How q, k, v and o are laid out together.
enum class Storage {
    contiguous,
    bhsd,
    padded,
    packed_qkv,  // o contiguous
    mixed,       // each tensor its own way, so that strides mixed up between tensors show
};

Arrangement arrangement_of(Storage storage, flashsci_tensor_t tensor) {
    switch (storage) {
        case Storage::bhsd: return Arrangement::bhsd;
        case Storage::padded: return Arrangement::padded;
        case Storage::packed_qkv:
            return tensor == FLASHSCI_TENSOR_O ? Arrangement::contiguous : Arrangement::packed_qkv;
        case Storage::mixed: {
            constexpr Arrangement by_tensor[] = {Arrangement::padded, Arrangement::bhsd, Arrangement::contiguous,
                                                 Arrangement::bhsd};  // q, k, v, o
            return by_tensor[tensor];
        }
        case Storage::contiguous: break;
    }
    return Arrangement::contiguous;
}

const char* storage_name(Storage s) {
    switch (s) {
        case Storage::contiguous: return "contiguous";
        case Storage::bhsd: return "bhsd";
        case Storage::padded: return "padded";
        case Storage::packed_qkv: return "packed qkv";
        case Storage::mixed: return "mixed";
    }
    return "?";
}

const char* mask_name(flashsci_mask_t m) {
    switch (m) {
        case FLASHSCI_MASK_NONE: return "none";
        case FLASHSCI_MASK_CAUSAL: return "causal";
        case FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: return "causal bottom-right";
    }
    return "?";
}

struct Case {
    Shape shape;
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_FLOAT32;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    float scale = 0.0f;  // 0: leave the plan's default, 1/sqrt(head_dim)
    float input_range = 1.0f;
    Storage storage = Storage::contiguous;
    int64_t rows_checked = kEveryRow;  // per (batch, head)
    int64_t window_left = -1, window_right = -1;
    float softcap = 0.0f;
    std::vector<float> alibi_slopes;  // [heads_q], or empty: off
};

// The reference's view of the case's features for query head h.
flashsci::test::Features features_of(const Case& c, int64_t h) {
    return {c.window_left, c.window_right, c.softcap, c.alibi_slopes.empty() ? 0.0 : c.alibi_slopes[size_t(h)]};
}

std::string describe(const Case& c) {
    std::ostringstream s;
    s << "batch " << c.shape.batch << ", seqlen_q " << c.shape.seqlen_q << ", seqlen_k " << c.shape.seqlen_k
      << ", heads " << c.shape.heads_q << "/" << c.shape.heads_kv << ", head_dim " << c.shape.head_dim << ", "
      << flashsci::test::dtype_name(c.dtype) << ", mask " << mask_name(c.mask) << ", scale "
      << (c.scale > 0 ? std::to_string(c.scale) : "default") << ", range " << c.input_range << ", "
      << storage_name(c.storage) << ", window (" << c.window_left << ", " << c.window_right << "), softcap "
      << c.softcap << ", alibi " << (c.alibi_slopes.empty() ? "off" : "on");
    return s.str();
}

float effective_scale(const Case& c) {
    return c.scale > 0 ? c.scale : float(1.0 / std::sqrt(double(c.shape.head_dim)));
}

Layout layout_for(Arrangement arrangement, int64_t seqlen, int64_t heads, int64_t head_dim) {
    switch (arrangement) {
        case Arrangement::bhsd: return flashsci::test::bhsd_layout(seqlen, heads, head_dim);
        case Arrangement::padded: {
            const int64_t head = head_dim + kPadding, seq = heads * head + kPadding;
            return {seqlen * seq + kPadding, seq, head};
        }
        case Arrangement::packed_qkv: return {seqlen * 3 * heads * head_dim, 3 * heads * head_dim, head_dim};
        case Arrangement::contiguous: break;
    }
    return flashsci::test::contiguous_layout(seqlen, heads, head_dim);
}

Layout query_layout(const Case& c, flashsci_tensor_t tensor) {
    return layout_for(arrangement_of(c.storage, tensor), c.shape.seqlen_q, c.shape.heads_q, c.shape.head_dim);
}

Layout key_layout(const Case& c, flashsci_tensor_t tensor) {
    return layout_for(arrangement_of(c.storage, tensor), c.shape.seqlen_k, c.shape.heads_kv, c.shape.head_dim);
}

// Elements a tensor needs: one past its last element.
size_t extent(const Layout& l, int64_t batch, int64_t seqlen, int64_t heads, int64_t head_dim) {
    return l.offset(batch - 1, seqlen - 1, heads - 1) + size_t(head_dim);
}

// Elements between q, k and v of one row of a packed QKV tensor.
size_t packed_head_group(const Case& c) { return size_t(c.shape.heads_q * c.shape.head_dim); }

// The elements of t from `first` on, as a tensor of their own: the reference's view of k or v
// inside a packed QKV tensor, which the reference addresses from element 0.
HostTensor suffix(const HostTensor& t, size_t first) {
    HostTensor view(t.dtype(), t.count() - first);
    const size_t bytes = flashsci::test::dtype_bytes(t.dtype());
    std::memcpy(view.data(), static_cast<const unsigned char*>(t.data()) + first * bytes, view.size_bytes());
    return view;
}

// q, k, v, o and lse of one case, with the layouts the plan is told.
struct Tensors {
    Layout lq, lk, lv, lo;
    HostTensor q, k, v, o, lse;

    Tensors(const Case& c, std::mt19937_64& rng)
        : lq(query_layout(c, FLASHSCI_TENSOR_Q)),
          lk(key_layout(c, FLASHSCI_TENSOR_K)),
          lv(key_layout(c, FLASHSCI_TENSOR_V)),
          lo(query_layout(c, FLASHSCI_TENSOR_O)),
          q(c.dtype, extent(lq, c.shape.batch, c.shape.seqlen_q, c.shape.heads_q, c.shape.head_dim) +
                         (c.storage == Storage::packed_qkv ? 2 * packed_head_group(c) : 0)),
          k(c.dtype, extent(lk, c.shape.batch, c.shape.seqlen_k, c.shape.heads_kv, c.shape.head_dim)),
          v(c.dtype, extent(lv, c.shape.batch, c.shape.seqlen_k, c.shape.heads_kv, c.shape.head_dim)),
          o(c.dtype, extent(lo, c.shape.batch, c.shape.seqlen_q, c.shape.heads_q, c.shape.head_dim)),
          lse(FLASHSCI_DTYPE_FLOAT32, size_t(c.shape.batch * c.shape.heads_q * c.shape.seqlen_q)) {
        q.fill_random(rng, c.input_range);
        if (c.storage == Storage::packed_qkv) {
            // q's buffer is the packed tensor; k and v start one and two head groups into it.
            k = suffix(q, packed_head_group(c));
            v = suffix(q, 2 * packed_head_group(c));
        } else {
            k.fill_random(rng, c.input_range);
            v.fill_random(rng, c.input_range);
        }
        o.poison();
        lse.poison();
    }
};

void set_layout(flashsci_plan_t plan, flashsci_tensor_t tensor, const Layout& l) {
    REQUIRE(flashsci_plan_set_strides(plan, tensor, l.batch, l.seq, l.head) == FLASHSCI_STATUS_SUCCESS);
}

// Runs the case on a fresh CPU plan, reading q, k, v where the storage puts them.
void run_flashsci(const Case& c, Tensors& t) {
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    const Shape& s = c.shape;
    REQUIRE(flashsci_plan_set_shape(plan, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim) ==
            FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_dtype(plan, c.dtype) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_mask(plan, c.mask) == FLASHSCI_STATUS_SUCCESS);
    if (c.scale > 0) REQUIRE(flashsci_plan_set_softmax_scale(plan, c.scale) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_window(plan, c.window_left, c.window_right) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_softcap(plan, c.softcap) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_alibi_slopes(plan, c.alibi_slopes.empty() ? nullptr : c.alibi_slopes.data()) ==
            FLASHSCI_STATUS_SUCCESS);
    set_layout(plan, FLASHSCI_TENSOR_Q, t.lq);
    set_layout(plan, FLASHSCI_TENSOR_K, t.lk);
    set_layout(plan, FLASHSCI_TENSOR_V, t.lv);
    set_layout(plan, FLASHSCI_TENSOR_O, t.lo);

    const auto* q = static_cast<const unsigned char*>(t.q.data());
    const size_t bytes = flashsci::test::dtype_bytes(c.dtype);
    const void* k = c.storage == Storage::packed_qkv ? q + (t.q.count() - t.k.count()) * bytes : t.k.data();
    const void* v = c.storage == Storage::packed_qkv ? q + (t.q.count() - t.v.count()) * bytes : t.v.data();
    const flashsci_status_t status = flashsci_forward(plan, q, k, v, t.o.data(), static_cast<float*>(t.lse.data()),
                                                      nullptr, 0, nullptr);
    INFO("flashsci_last_error: " << flashsci_last_error());
    flashsci_plan_destroy(plan);
    REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
}

// The worst errors over the compared rows.
struct Comparison {
    double max_out_error = 0, max_out_reference = 0;
    double max_lse_error = 0;  // relative to max(1, |lse_ref|)
    int64_t empty_rows = 0;    // rows that see no key
    int64_t empty_row_mismatches = 0;
    int64_t unwritten = 0;        // NaN anywhere in O or LSE: the poison survived
    int64_t gaps_overwritten = 0;  // elements of o's buffer outside the tensor that lost their poison
};

double lse_at(const Tensors& t, const Shape& s, int64_t b, int64_t h, int64_t i) {
    return t.lse.get(size_t((b * s.heads_q + h) * s.seqlen_q + i));
}

// Every element of O and LSE written, and nothing between O's elements.
void count_unwritten(const Case& c, const Tensors& t, Comparison& result) {
    const Shape& s = c.shape;
    std::vector<bool> in_tensor(t.o.count(), false);
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                result.unwritten += std::isnan(lse_at(t, s, b, h, i));
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t element = t.lo.offset(b, i, h) + size_t(d);
                    in_tensor[element] = true;
                    result.unwritten += std::isnan(t.o.get(element));
                }
            }
    for (size_t element = 0; element < t.o.count(); ++element)
        result.gaps_overwritten += !in_tensor[element] && !std::isnan(t.o.get(element));
}

void compare_row(const Case& c, const Tensors& t, int64_t b, int64_t h, int64_t i, Comparison& result) {
    const Shape& s = c.shape;
    const flashsci::test::RowResult ref =
        flashsci::test::reference_row(s, c.mask, effective_scale(c), t.q, t.lq, t.k, t.lk, t.v, t.lv, b, h, i,
                                      features_of(c, h));
    const double lse = lse_at(t, s, b, h, i);
    bool row_is_zero = true;
    for (int64_t d = 0; d < s.head_dim; ++d) {
        const double out = t.o.get(t.lo.offset(b, i, h) + size_t(d));
        const double expected = ref.out[size_t(d)];
        result.max_out_error = std::max(result.max_out_error, std::abs(out - expected));
        result.max_out_reference = std::max(result.max_out_reference, std::abs(expected));
        row_is_zero = row_is_zero && out == 0.0;
    }
    if (std::isinf(ref.lse)) {
        ++result.empty_rows;
        result.empty_row_mismatches += !(row_is_zero && lse == ref.lse);
        return;
    }
    result.max_lse_error = std::max(result.max_lse_error, std::abs(lse - ref.lse) / std::max(1.0, std::abs(ref.lse)));
}

// The rows compared: all of them, or rows_checked spread evenly from the first to the last.
int64_t checked_row(const Case& c, int64_t n) {
    const int64_t rows = std::min(c.rows_checked, c.shape.seqlen_q);
    return rows == c.shape.seqlen_q ? n : n * (c.shape.seqlen_q - 1) / std::max<int64_t>(rows - 1, 1);
}

Comparison compare(const Case& c, const Tensors& t) {
    Comparison result;
    count_unwritten(c, t, result);
    const int64_t rows = std::min(c.rows_checked, c.shape.seqlen_q);
    for (int64_t b = 0; b < c.shape.batch; ++b)
        for (int64_t h = 0; h < c.shape.heads_q; ++h)
            for (int64_t n = 0; n < rows; ++n) compare_row(c, t, b, h, checked_row(c, n), result);
    return result;
}

// Runs the case on fresh inputs and checks it against the reference; returns the comparison.
Comparison check_case(const Case& c) {
    const uint64_t seed = flashsci::test::fresh_seed();
    INFO("case: " << describe(c));
    INFO("seed: " << seed);
    std::mt19937_64 rng(seed);
    Tensors t(c, rng);
    run_flashsci(c, t);
    const Comparison r = compare(c, t);

    const bool fp32 = c.dtype == FLASHSCI_DTYPE_FLOAT32;
    INFO("max |O - ref| " << r.max_out_error << ", max |ref| " << r.max_out_reference << ", LSE error "
                          << r.max_lse_error);
    CHECK(r.unwritten == 0);
    CHECK(r.gaps_overwritten == 0);
    CHECK(r.max_out_error <= (fp32 ? kFp32Tolerance : kHalfTolerance) * r.max_out_reference);
    CHECK(r.max_lse_error <= (fp32 ? kFp32LseTolerance : kHalfLseTolerance));
    CHECK(r.empty_row_mismatches == 0);
    return r;
}

// The spacing of representable values in [1, 2).
double unit_in_last_place_at_one(flashsci_dtype_t dtype) {
    switch (dtype) {
        case FLASHSCI_DTYPE_FLOAT16: return 0x1p-10;
        case FLASHSCI_DTYPE_BFLOAT16: return 0x1p-7;
        case FLASHSCI_DTYPE_FLOAT32: break;
    }
    return 0x1p-23;
}

Shape square(int64_t batch, int64_t seqlen, int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
    return {batch, seqlen, seqlen, heads_q, heads_kv, head_dim};
}

}  // namespace

TEST_CASE("CPU attention matches fp64 at short seqlens, every dtype and mask", "[cpu]") {
    const int64_t seqlen = GENERATE(1, 17, 127, 128, 129);
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = square(2, seqlen, 4, 2, 64);
        c.dtype = dtype;
        c.mask = mask;
        check_case(c);
    }
}

TEST_CASE("CPU attention matches fp64 at seqlen 1000 (sampled rows, every element written)", "[cpu]") {
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = square(2, 1000, 4, 2, 64);
        c.dtype = dtype;
        c.mask = mask;
        c.rows_checked = kSampledRows;
        check_case(c);
    }
}

TEST_CASE("CPU attention with seqlen_q != seqlen_k under both causal alignments", "[cpu]") {
    const auto lengths = GENERATE(std::make_pair(17, 129), std::make_pair(129, 17), std::make_pair(1, 100),
                                  std::make_pair(100, 1), std::make_pair(64, 200), std::make_pair(200, 64));
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {2, lengths.first, lengths.second, 2, 1, 32};
        c.dtype = dtype;
        c.mask = mask;
        const Comparison r = check_case(c);
        // Only bottom-right with more queries than keys leaves rows that see nothing: O = 0, LSE = -inf.
        const bool has_empty_rows = mask == FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT && lengths.first > lengths.second;
        const int64_t empty_rows_per_head = has_empty_rows ? lengths.first - lengths.second : 0;
        CHECK(r.empty_rows == empty_rows_per_head * c.shape.batch * c.shape.heads_q);
    }
}

TEST_CASE("CPU attention with grouped and multi-query heads", "[cpu]") {
    const auto heads = GENERATE(std::make_pair(8, 2), std::make_pair(16, 2), std::make_pair(6, 1),
                                std::make_pair(3, 3));
    INFO("heads_q/heads_kv " << heads.first << "/" << heads.second);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = square(2, 33, heads.first, heads.second, 16);
        c.dtype = dtype;
        c.mask = FLASHSCI_MASK_CAUSAL;
        check_case(c);
    }
}

TEST_CASE("CPU attention reads and writes strided layouts", "[cpu]") {
    const Storage storage = GENERATE(Storage::bhsd, Storage::padded, Storage::packed_qkv, Storage::mixed);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        // Packed QKV holds as many k/v heads as q heads.
        c.shape = storage == Storage::packed_qkv ? square(2, 45, 4, 4, 24) : Shape{2, 45, 70, 4, 2, 24};
        c.dtype = dtype;
        c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT;
        c.storage = storage;
        check_case(c);
    }
}

TEST_CASE("CPU attention at every head_dim class", "[cpu]") {
    const int64_t head_dim = GENERATE(8, 16, 24, 40, 64, 72, 96, 128, 136, 192, 256);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {1, 40, 75, 2, 1, head_dim};
        c.dtype = dtype;
        c.mask = FLASHSCI_MASK_CAUSAL;
        check_case(c);
    }
}

TEST_CASE("CPU attention honours a custom softmax scale", "[cpu]") {
    const float scale = GENERATE(0.03125f, 0.3f, 1.0f, 2.5f);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = square(1, 70, 2, 2, 32);
        c.dtype = dtype;
        c.scale = scale;
        check_case(c);
    }
}

TEST_CASE("CPU attention stays finite and exact on large-magnitude inputs", "[cpu]") {
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    const int64_t head_dim = GENERATE(64, 256);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {1, 150, 130, 2, 1, head_dim};
        c.dtype = dtype;
        c.mask = mask;
        c.input_range = kLargeInputRange;
        check_case(c);
    }
}

// Scores that climb key by key (k_j ∝ j plus noise, q ≈ 1): each K/V tile's scores pass the row's running
// maximum by more than the fast path's rescale margin part way through the tile, so it must rescale what it
// summed of that tile so far. Three tiles of keys at head_dim 64; scores up to ~25 (below the fp32 path's
// fp64 bound).
TEST_CASE("CPU attention stays exact while the scores climb through every key tile", "[cpu]") {
    constexpr double kTopScore = 25.0;
    constexpr float kNoise = 0.05f;
    const flashsci_mask_t mask = GENERATE(FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {1, 33, 1500, 1, 1, 64};
        c.dtype = dtype;
        c.mask = mask;
        c.input_range = kNoise;
        const uint64_t seed = flashsci::test::fresh_seed();
        INFO("case: " << describe(c) << ", seed " << seed);
        std::mt19937_64 rng(seed);
        Tensors t(c, rng);
        t.v.fill_random(rng, 1.0f);
        const Shape& s = c.shape;
        const double key_step = kTopScore / (effective_scale(c) * double(s.head_dim) * double(s.seqlen_k));
        for (int64_t i = 0; i < s.seqlen_q; ++i)
            for (int64_t d = 0; d < s.head_dim; ++d) {
                const size_t e = t.lq.offset(0, i, 0) + size_t(d);
                t.q.set(e, 1.0f + t.q.get(e));
            }
        for (int64_t j = 0; j < s.seqlen_k; ++j)
            for (int64_t d = 0; d < s.head_dim; ++d) {
                const size_t e = t.lk.offset(0, j, 0) + size_t(d);
                t.k.set(e, float(key_step * double(j)) + t.k.get(e));
            }
        run_flashsci(c, t);
        const Comparison r = compare(c, t);
        const bool fp32 = dtype == FLASHSCI_DTYPE_FLOAT32;
        INFO("max |O - ref| " << r.max_out_error << ", max |ref| " << r.max_out_reference << ", LSE error "
                              << r.max_lse_error);
        CHECK(r.unwritten == 0);
        CHECK(r.max_out_error <= (fp32 ? kFp32Tolerance : kHalfTolerance) * r.max_out_reference);
        CHECK(r.max_lse_error <= (fp32 ? kFp32LseTolerance : kHalfLseTolerance));
    }
}

// With q = 0 both keys weigh the same, so O is the exact mean of two V rows; rows one unit in
// the last place apart make that mean a tie between two representable values, which must
// round to the even one (truncation or round-half-up would pass the tolerance checks above).
TEST_CASE("CPU attention rounds its output to nearest even", "[cpu]") {
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {1, 1, 2, 1, 1, 8};
        c.dtype = dtype;
        std::mt19937_64 rng(flashsci::test::fresh_seed());
        Tensors t(c, rng);
        const double ulp = unit_in_last_place_at_one(dtype);
        std::vector<double> expected;
        for (int64_t d = 0; d < c.shape.head_dim; ++d) {
            const double sign = d < c.shape.head_dim / 2 ? 1.0 : -1.0;
            // Even lanes: the tie 1 + ulp/2 goes down to 1; odd lanes: 1 + 3ulp/2 goes up to 1 + 2ulp.
            const double low = d % 2 == 0 ? 1.0 : 1.0 + ulp;
            t.q.set(size_t(d), 0.0f);
            t.v.set(t.lv.offset(0, 0, 0) + size_t(d), float(sign * low));
            t.v.set(t.lv.offset(0, 1, 0) + size_t(d), float(sign * (low + ulp)));
            expected.push_back(sign * (d % 2 == 0 ? 1.0 : 1.0 + 2 * ulp));
        }
        run_flashsci(c, t);
        INFO(flashsci::test::dtype_name(dtype));
        for (int64_t d = 0; d < c.shape.head_dim; ++d) {
            INFO("lane " << d);
            CHECK(t.o.get(t.lo.offset(0, 0, 0) + size_t(d)) == expected[size_t(d)]);
        }
    }
}

namespace {

constexpr std::pair<int64_t, int64_t> kWindows[] = {{0, 0}, {16, -1}, {-1, 8}, {5, 3}};
constexpr flashsci_mask_t kAllMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
// ALiBi slopes as in the ALiBi paper: 2^(-8h/heads) for head h = 1..heads.
constexpr double kAlibiExponent = 8.0;
// Inputs large enough that a softcap of a few units bends the scores.
constexpr float kSoftcapInputRange = 3.0f;

std::vector<float> alibi_slopes(int64_t heads) {
    std::vector<float> slopes;
    for (int64_t h = 1; h <= heads; ++h) slopes.push_back(float(std::exp2(-kAlibiExponent * double(h) / double(heads))));
    return slopes;
}

// Rows of one (batch, head) that see no key.
int64_t rows_without_keys(const Case& c) {
    int64_t empty = 0;
    for (int64_t i = 0; i < c.shape.seqlen_q; ++i) {
        const flashsci::test::KeyRange keys = flashsci::test::visible_keys(c.shape, c.mask, features_of(c, 0), i);
        empty += keys.last < keys.first;
    }
    return empty;
}

}  // namespace

TEST_CASE("CPU sliding-window attention matches fp64 under every mask, dtype and odd length", "[cpu][window]") {
    const auto lengths = GENERATE(std::make_pair(1, 17), std::make_pair(17, 1), std::make_pair(17, 129),
                                  std::make_pair(129, 300), std::make_pair(300, 129), std::make_pair(129, 129));
    const auto window = GENERATE(from_range(std::begin(kWindows), std::end(kWindows)));
    for (flashsci_mask_t mask : kAllMasks)
        for (flashsci_dtype_t dtype : kAllDtypes) {
            Case c;
            c.shape = {2, lengths.first, lengths.second, 2, 1, 32};
            c.dtype = dtype;
            c.mask = mask;
            c.window_left = window.first, c.window_right = window.second;
            const Comparison r = check_case(c);
            CHECK(r.empty_rows == rows_without_keys(c) * c.shape.batch * c.shape.heads_q);
        }
}

// Window (0, 0) without a mask: row i sees key i - (seqlen_q - seqlen_k), so the first 300 - 129 rows see none.
TEST_CASE("CPU sliding window leaves rows before the diagonal empty: O = 0, LSE = -inf", "[cpu][window]") {
    constexpr int64_t kSeqQ = 300, kSeqK = 129;
    for (flashsci_dtype_t dtype : kAllDtypes) {
        Case c;
        c.shape = {1, kSeqQ, kSeqK, 2, 2, 16};
        c.dtype = dtype;
        c.window_left = 0, c.window_right = 0;
        const Comparison r = check_case(c);
        CHECK(r.empty_rows == (kSeqQ - kSeqK) * c.shape.heads_q);
    }
}

TEST_CASE("CPU softcapped attention matches fp64", "[cpu][softcap]") {
    const float softcap = GENERATE(1.0f, 5.0f, 50.0f);
    const auto lengths = GENERATE(std::make_pair(17, 129), std::make_pair(129, 17), std::make_pair(1, 300));
    for (flashsci_mask_t mask : kAllMasks)
        for (flashsci_dtype_t dtype : kAllDtypes) {
            Case c;
            c.shape = {2, lengths.first, lengths.second, 4, 2, 40};
            c.dtype = dtype;
            c.mask = mask;
            c.softcap = softcap;
            c.input_range = kSoftcapInputRange;
            check_case(c);
        }
}

TEST_CASE("CPU ALiBi attention matches fp64", "[cpu][alibi]") {
    const auto lengths = GENERATE(std::make_pair(17, 129), std::make_pair(129, 17), std::make_pair(300, 300),
                                  std::make_pair(1, 17));
    for (flashsci_mask_t mask : kAllMasks)
        for (flashsci_dtype_t dtype : kAllDtypes) {
            Case c;
            c.shape = {2, lengths.first, lengths.second, 4, 2, 24};
            c.dtype = dtype;
            c.mask = mask;
            c.alibi_slopes = alibi_slopes(c.shape.heads_q);
            check_case(c);
        }
}

TEST_CASE("CPU attention with window, softcap and ALiBi together, strided and grouped", "[cpu][window][softcap][alibi]") {
    const auto window = GENERATE(from_range(std::begin(kWindows), std::end(kWindows)));
    for (flashsci_mask_t mask : kAllMasks)
        for (flashsci_dtype_t dtype : kAllDtypes) {
            Case c;
            c.shape = {2, 129, 300, 6, 2, 72};
            c.dtype = dtype;
            c.mask = mask;
            c.storage = Storage::mixed;
            c.window_left = window.first, c.window_right = window.second;
            c.softcap = 5.0f;
            c.input_range = kSoftcapInputRange;
            c.alibi_slopes = alibi_slopes(c.shape.heads_q);
            check_case(c);
        }
}
