// Extreme inputs on the CPU backend: scores of magnitude 1e4, the NaN/Inf policy (a non-finite input
// reaches only the rows that see it), rows that see no key, head_dim 8, and bit-identical repeats.
#include <catch2/catch.hpp>
#include <flashsci.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference.h"
#include "tensors.h"

using namespace flashsci::test;

namespace {

constexpr flashsci_dtype_t kDtypes[] = {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32};
constexpr flashsci_mask_t kMasks[] = {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};

struct Problem {
    flashsci_dtype_t dtype;
    Shape shape;
    flashsci_mask_t mask;
    float scale = 0.0f;  // 0: the default 1/sqrt(head_dim)
};

struct Inputs {
    HostTensor q, k, v;
};

struct Result {
    HostTensor o;
    std::vector<float> lse;
};

size_t q_count(const Shape& s) { return size_t(s.batch * s.seqlen_q * s.heads_q * s.head_dim); }
size_t kv_count(const Shape& s) { return size_t(s.batch * s.seqlen_k * s.heads_kv * s.head_dim); }

Inputs random_inputs(const Problem& p, std::mt19937_64& rng, float range) {
    Inputs in{HostTensor(p.dtype, q_count(p.shape)), HostTensor(p.dtype, kv_count(p.shape)),
              HostTensor(p.dtype, kv_count(p.shape))};
    in.q.fill_random(rng, range), in.k.fill_random(rng, range), in.v.fill_random(rng, 1.0f);
    return in;
}

class Plan {
public:
    explicit Plan(const Problem& p) {
        REQUIRE(flashsci_plan_create(&plan_, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
        const Shape& s = p.shape;
        REQUIRE(flashsci_plan_set_shape(plan_, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim) ==
                FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_dtype(plan_, p.dtype) == FLASHSCI_STATUS_SUCCESS);
        REQUIRE(flashsci_plan_set_mask(plan_, p.mask) == FLASHSCI_STATUS_SUCCESS);
        if (p.scale > 0.0f) REQUIRE(flashsci_plan_set_softmax_scale(plan_, p.scale) == FLASHSCI_STATUS_SUCCESS);
    }
    ~Plan() { flashsci_plan_destroy(plan_); }
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    operator flashsci_plan_t() const { return plan_; }

private:
    flashsci_plan_t plan_ = nullptr;
};

Result forward(flashsci_plan_t plan, const Problem& p, const Inputs& in) {
    Result r{HostTensor(p.dtype, q_count(p.shape)),
             std::vector<float>(size_t(p.shape.batch * p.shape.heads_q * p.shape.seqlen_q))};
    r.o.poison();
    std::memset(r.lse.data(), 0xff, r.lse.size() * sizeof(float));
    const flashsci_status_t status =
        flashsci_forward(plan, in.q.data(), in.k.data(), in.v.data(), r.o.data(), r.lse.data(), nullptr, 0, nullptr);
    INFO(flashsci_last_error());
    REQUIRE(status == FLASHSCI_STATUS_SUCCESS);
    return r;
}

Result forward(const Problem& p, const Inputs& in) {
    Plan plan(p);
    return forward(plan, p, in);
}

double scale_of(const Problem& p) { return p.scale > 0.0f ? p.scale : 1.0 / std::sqrt(double(p.shape.head_dim)); }

size_t o_index(const Shape& s, int64_t b, int64_t i, int64_t h, int64_t d) {
    return size_t(((b * s.seqlen_q + i) * s.heads_q + h) * s.head_dim + d);
}
size_t lse_index(const Shape& s, int64_t b, int64_t i, int64_t h) { return size_t((b * s.heads_q + h) * s.seqlen_q + i); }

bool sees(const Problem& p, int64_t i, int64_t j) { return j < p.shape.seqlen_k && j <= i + mask_diagonal(p.mask, p.shape); }

bool same_bits(const HostTensor& a, const HostTensor& b, size_t index) {
    const size_t bytes = dtype_bytes(a.dtype());
    return std::memcmp(static_cast<const char*>(a.data()) + index * bytes,
                       static_cast<const char*>(b.data()) + index * bytes, bytes) == 0;
}
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Where a non-finite value goes in, and what the policy says comes out.
struct Injection {
    enum Tensor { q, k, v } tensor;
    float value;  // NaN, +Inf or -Inf
    int64_t batch, row, head, column;  // head: a query head for q, a key/value head for k and v
};

std::string describe(const Problem& p, const Injection& x) {
    static const char* names[] = {"q", "k", "v"};
    return std::string(dtype_name(p.dtype)) + " mask " + std::to_string(int(p.mask)) + " seqlen_q " +
           std::to_string(p.shape.seqlen_q) + " seqlen_k " + std::to_string(p.shape.seqlen_k) + ": " +
           std::to_string(x.value) + " in " + names[x.tensor] + "[" + std::to_string(x.batch) + ", " +
           std::to_string(x.row) + ", " + std::to_string(x.head) + ", " + std::to_string(x.column) + "]";
}

void inject(const Problem& p, Inputs& in, const Injection& x) {
    const Shape& s = p.shape;
    const int64_t heads = x.tensor == Injection::q ? s.heads_q : s.heads_kv;
    const int64_t seqlen = x.tensor == Injection::q ? s.seqlen_q : s.seqlen_k;
    HostTensor& t = x.tensor == Injection::q ? in.q : x.tensor == Injection::k ? in.k : in.v;
    t.set(size_t(((x.batch * seqlen + x.row) * heads + x.head) * s.head_dim + x.column), x.value);
}

// Whether query row (b, i, h) sees the injected element.
bool reached(const Problem& p, const Injection& x, int64_t b, int64_t i, int64_t h) {
    if (b != x.batch) return false;
    if (x.tensor == Injection::q) return i == x.row && h == x.head;
    return h / (p.shape.heads_q / p.shape.heads_kv) == x.head && sees(p, i, x.row);
}

// The policy, against a run on the same inputs without the injection:
//   NaN in q[b, i, h, :] or in k[b, j, g, :]: every row that sees it gets O = NaN (all columns), LSE = NaN;
//   NaN in v[b, j, g, d]: every row that sees it gets O[..., d] = NaN, its other columns and LSE unchanged;
//   ±Inf anywhere: the rows that see it are unspecified;
//   every other row is bit-identical to the clean run.
void check_policy(const Problem& p, const Injection& x, const Result& clean, const Result& dirty) {
    const Shape& s = p.shape;
    const bool nan = std::isnan(x.value);
    size_t spilled = 0, wrong = 0, reached_rows = 0;
    std::string first;
    auto note = [&](size_t& counter, const std::string& what) {
        if (counter++ == 0 && first.empty()) first = what;
    };
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const std::string row = "row [" + std::to_string(b) + ", " + std::to_string(i) + ", " +
                                        std::to_string(h) + "]";
                const size_t l = lse_index(s, b, i, h);
                if (!reached(p, x, b, i, h)) {
                    bool same = same_bits(clean.lse[l], dirty.lse[l]);
                    for (int64_t d = 0; d < s.head_dim; ++d) same = same && same_bits(clean.o, dirty.o, o_index(s, b, i, h, d));
                    if (!same) note(spilled, "spilled into " + row);
                    continue;
                }
                ++reached_rows;
                if (!nan) continue;
                if (x.tensor == Injection::v) {
                    bool ok = same_bits(clean.lse[l], dirty.lse[l]);
                    for (int64_t d = 0; d < s.head_dim; ++d) {
                        const size_t o = o_index(s, b, i, h, d);
                        ok = ok && (d == x.column ? std::isnan(dirty.o.get(o)) : same_bits(clean.o, dirty.o, o));
                    }
                    if (!ok) note(wrong, "v's NaN: column " + std::to_string(x.column) + " of " + row + " not NaN alone");
                } else {
                    bool ok = std::isnan(dirty.lse[l]);
                    for (int64_t d = 0; d < s.head_dim; ++d) ok = ok && std::isnan(dirty.o.get(o_index(s, b, i, h, d)));
                    if (!ok) note(wrong, row + " sees the NaN but is not all NaN (LSE " + std::to_string(dirty.lse[l]) + ")");
                }
            }
    INFO(describe(p, x) << ": " << reached_rows << " rows see it; " << spilled << " rows spilled, " << wrong
                        << " rows off policy; first: " << first);
    CHECK(reached_rows > 0);
    CHECK(spilled == 0);
    CHECK(wrong == 0);
}

// The injections every policy test makes: each tensor, NaN and ±Inf, a key row in the middle of a tile.
std::vector<Injection> injections(const Shape& s) {
    const int64_t j = std::min<int64_t>(37, s.seqlen_k - 1), i = std::min<int64_t>(45, s.seqlen_q - 1);
    const int64_t b = s.batch - 1, d = std::min<int64_t>(5, s.head_dim - 1);
    std::vector<Injection> all;
    for (const float value : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()}) {
        all.push_back({Injection::q, value, b, i, s.heads_q - 1, d});
        all.push_back({Injection::k, value, b, j, s.heads_kv - 1, d});
        all.push_back({Injection::v, value, b, j, 0, d});
    }
    return all;
}

}  // namespace

// q and k aligned with one random sign pattern, each key flipped as a whole: scale·q·k = ±(0.3…1)·kScoreScale,
// so the running max jumps by ~1e4 between tiles and exp() would overflow without the max subtracted.
constexpr double kScoreScale = 1.7e4;

Inputs large_score_inputs(const Problem& p, std::mt19937_64& rng) {
    const Shape& s = p.shape;
    const float r = float(std::sqrt(kScoreScale / double(s.head_dim)));
    std::uniform_real_distribution<float> magnitude(0.55f * r, r), uniform(-1.0f, 1.0f);
    std::bernoulli_distribution coin;
    std::vector<float> sign(size_t(s.head_dim));
    for (float& x : sign) x = coin(rng) ? 1.0f : -1.0f;
    Inputs in{HostTensor(p.dtype, q_count(s)), HostTensor(p.dtype, kv_count(s)), HostTensor(p.dtype, kv_count(s))};
    for (size_t e = 0; e < in.q.count(); ++e) in.q.set(e, sign[e % size_t(s.head_dim)] * magnitude(rng));
    for (size_t row = 0; row < in.k.count() / size_t(s.head_dim); ++row) {
        const float flip = coin(rng) ? 1.0f : -1.0f;
        for (size_t d = 0; d < size_t(s.head_dim); ++d) {
            const size_t e = row * size_t(s.head_dim) + d;
            in.k.set(e, flip * sign[d] * magnitude(rng));
            in.v.set(e, uniform(rng));
        }
    }
    return in;
}

TEST_CASE("extreme: scores of magnitude 1e4 stay finite and match fp64", "[extreme]") {
    std::mt19937_64 rng(fresh_seed());
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const int64_t head_dim : {8, 64})
            for (const flashsci_mask_t mask : kMasks) {
                const Problem p{dtype, {2, 33, 150, 2, 1, head_dim}, mask, 1.0f};
                const Inputs in = large_score_inputs(p, rng);
                const Result r = forward(p, in);
                const Shape& s = p.shape;
                const Layout lq = contiguous_layout(s.seqlen_q, s.heads_q, s.head_dim);
                const Layout lkv = contiguous_layout(s.seqlen_k, s.heads_kv, s.head_dim);
                double max_abs_lse = 0, worst = 0, worst_lse = 0;
                for (int64_t b = 0; b < s.batch; ++b)
                    for (int64_t h = 0; h < s.heads_q; ++h)
                        for (int64_t i = 0; i < s.seqlen_q; ++i) {
                            const RowResult want = reference_row(s, mask, 1.0, in.q, lq, in.k, lkv, in.v, lkv, b, h, i);
                            const float lse = r.lse[lse_index(s, b, i, h)];
                            REQUIRE(std::isfinite(lse));
                            max_abs_lse = std::max(max_abs_lse, std::fabs(want.lse));
                            worst_lse = std::max(worst_lse, std::fabs(lse - want.lse));
                            for (int64_t d = 0; d < s.head_dim; ++d) {
                                const double got = r.o.get(o_index(s, b, i, h, d));
                                REQUIRE(std::isfinite(got));
                                worst = std::max(worst, std::fabs(got - want.out[size_t(d)]));
                            }
                        }
                INFO(dtype_name(dtype) << " head_dim " << head_dim << " mask " << int(mask) << ": max |lse| "
                                       << max_abs_lse << ", worst O error " << worst << ", worst LSE error "
                                       << worst_lse);
                CHECK(max_abs_lse > 0.3 * kScoreScale);  // the scores really are large
                // O: v in [-1, 1]; one output rounding, and fp32 scores (fp16/bf16 inputs) off by ~1e-7·1e4.
                CHECK(worst <= (dtype == FLASHSCI_DTYPE_FLOAT32 ? 1e-6 : 2e-2));
                // LSE: stored as fp32 (half an ulp of 1e4 is 5e-4); fp16/bf16 inputs accumulate their scores in fp32.
                CHECK(worst_lse <= (dtype == FLASHSCI_DTYPE_FLOAT32 ? 2e-7 : 1e-5) * kScoreScale);
            }
}

TEST_CASE("extreme: a NaN reaches only the rows that see it, Inf never spills", "[extreme]") {
    std::mt19937_64 rng(fresh_seed());
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const auto& [seqlen_q, seqlen_k] : {std::pair<int64_t, int64_t>{70, 90}, {90, 70}})
            for (const flashsci_mask_t mask : kMasks) {
                const Problem p{dtype, {2, seqlen_q, seqlen_k, 4, 2, 64}, mask};
                const Inputs clean_inputs = random_inputs(p, rng, 1.0f);
                Plan plan(p);
                const Result clean = forward(plan, p, clean_inputs);
                for (const Injection& x : injections(p.shape)) {
                    Inputs dirty_inputs = clean_inputs;
                    inject(p, dirty_inputs, x);
                    check_policy(p, x, clean, forward(plan, p, dirty_inputs));
                }
            }
}

TEST_CASE("extreme: rows that see no key get O = 0 and LSE = -inf, even beside NaN keys", "[extreme]") {
    std::mt19937_64 rng(fresh_seed());
    for (const flashsci_dtype_t dtype : kDtypes) {
        // Bottom-right causal with seqlen_q > seqlen_k: rows 0..19 see nothing.
        const Problem p{dtype, {1, 90, 70, 2, 1, 16}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
        Inputs in = random_inputs(p, rng, 1.0f);
        in.k.set(0, std::numeric_limits<float>::quiet_NaN());   // key 0, seen by row 20 on
        in.v.set(16, std::numeric_limits<float>::quiet_NaN());  // key 1
        const Result r = forward(p, in);
        for (int64_t h = 0; h < 2; ++h)
            for (int64_t i = 0; i < 90; ++i) {
                const bool blind = i < 20;
                const float lse = r.lse[lse_index(p.shape, 0, i, h)];
                INFO("row " << i << " head " << h << " LSE " << lse);
                if (blind) CHECK(lse == -std::numeric_limits<float>::infinity());
                else CHECK(std::isnan(lse));  // every seeing row sees key 0
                for (int64_t d = 0; d < 16; ++d) {
                    const double o = r.o.get(o_index(p.shape, 0, i, h, d));
                    if (blind) CHECK((o == 0.0 && !std::signbit(o)));
                    else CHECK(std::isnan(o));
                }
            }
    }
}

TEST_CASE("extreme: the same inputs on the same plan give bit-identical outputs", "[extreme][determinism]") {
    std::mt19937_64 rng(fresh_seed());
    for (const flashsci_dtype_t dtype : kDtypes)
        for (const flashsci_mask_t mask : kMasks) {
            const Problem p{dtype, {2, 200, 300, 4, 2, 72}, mask};
            const Inputs in = random_inputs(p, rng, 2.0f);
            Plan plan(p);
            const Result first = forward(plan, p, in);
            for (int repeat = 0; repeat < 3; ++repeat) {
                const Result again = repeat < 2 ? forward(plan, p, in) : forward(p, in);  // last: a fresh plan
                CHECK(std::memcmp(first.o.data(), again.o.data(), first.o.size_bytes()) == 0);
                CHECK(std::memcmp(first.lse.data(), again.lse.data(), first.lse.size() * sizeof(float)) == 0);
            }
        }
}

TEST_CASE("extreme: strides reaching offset INT64_MAX are rejected without overflowing", "[extreme]") {
    // Found by the fuzzer (UBSan): the largest offset is exactly INT64_MAX, so its element count is not.
    flashsci_plan_t plan = nullptr;
    REQUIRE(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU) == FLASHSCI_STATUS_SUCCESS);
    REQUIRE(flashsci_plan_set_shape(plan, 2, 1, 1, 1, 1, 8) == FLASHSCI_STATUS_SUCCESS);
    const int64_t batch_stride = std::numeric_limits<int64_t>::max() - 7;  // 7 + 1·batch_stride = INT64_MAX
    for (const flashsci_tensor_t tensor : {FLASHSCI_TENSOR_Q, FLASHSCI_TENSOR_K, FLASHSCI_TENSOR_V, FLASHSCI_TENSOR_O}) {
        CHECK(flashsci_plan_set_strides(plan, tensor, batch_stride, 8, 8) == FLASHSCI_STATUS_INVALID_VALUE);
        CHECK(std::string(flashsci_last_error()).find("overflow") != std::string::npos);
    }
    flashsci_plan_destroy(plan);
}
