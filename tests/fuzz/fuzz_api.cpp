// libFuzzer target: random sequences of C ABI calls on the CPU backend with hostile arguments —
// negative, zero and huge sizes, shapes whose products overflow 64 bits, NULL and misaligned
// pointers, outputs aliasing inputs, enumerators out of range, bogus streams and workspaces,
// variable-length shapes and their cu_seqlens offsets (decreasing, negative, past the totals,
// longer than the maxima).
//
// Invariants checked on every call (a violation aborts, which libFuzzer reports):
//   - every status is one of the enumerators; every failure leaves a non-empty message;
//   - flashsci_plan_set_shape and flashsci_plan_set_varlen_shape accept exactly the shapes the header
//     allows, and flashsci_forward_varlen exactly the offsets it allows (independent oracles);
//   - a failing forward writes nothing to o or lse; a succeeding one writes nothing outside o's
//     layout (gaps between strided rows stay untouched), nor (varlen) rows outside every sequence;
//   - ASan/UBSan/LSan: no out-of-bounds access, no undefined behaviour, no leak.
//
// The library cannot know how large a host buffer is, so forward is called only with buffers
// sized for the plan's shape and strides (the documented precondition). Build and run:
// tests/fuzz/run.sh.
#include <flashsci.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kPlanSlots = 3;
constexpr int kMaxCalls = 48;
constexpr int64_t kMaxBufferElements = int64_t{1} << 16;  // per tensor, so a forward stays fast
constexpr int64_t kMaxWork = int64_t{1} << 21;            // batch·heads_q·seqlen_q·seqlen_k·head_dim
constexpr unsigned char kPoison = 0xA5;
constexpr int kForwardTensorCount = FLASHSCI_TENSOR_O + 1;  // Q, K, V, O: the tensors a forward reads and writes
constexpr int kTensorCount = FLASHSCI_TENSOR_DV + 1;        // and the backward's DO, DQ, DK, DV

[[noreturn]] void violated(const char* what, int line) {
    std::fprintf(stderr, "fuzz_api: invariant violated (line %d): %s; last error: \"%s\"\n", line, what,
                 flashsci_last_error());
    std::abort();
}
#define EXPECT(condition) \
    do {                  \
        if (!(condition)) violated(#condition, __LINE__); \
    } while (0)

// Every call's status: an enumerator, and a message whenever it is a failure.
flashsci_status_t checked(flashsci_status_t status, int line) {
    if (status < FLASHSCI_STATUS_SUCCESS || status > FLASHSCI_STATUS_INTERNAL_ERROR) violated("status in range", line);
    if (status == FLASHSCI_STATUS_INTERNAL_ERROR) violated("no internal error", line);
    if (status != FLASHSCI_STATUS_SUCCESS && flashsci_last_error()[0] == '\0') violated("failure has a message", line);
    return status;
}
#define CALL(expr) checked((expr), __LINE__)

int64_t interesting_int64(FuzzedDataProvider& in) {
    static constexpr int64_t kTable[] = {0,
                                         -1,
                                         1,
                                         2,
                                         3,
                                         7,
                                         8,
                                         9,
                                         16,
                                         64,
                                         128,
                                         256,
                                         264,
                                         1000,
                                         65535,
                                         65536,
                                         int64_t{1} << 31,
                                         (int64_t{1} << 31) - 1,
                                         int64_t{1} << 32,
                                         int64_t{1} << 40,
                                         int64_t{1} << 61,
                                         int64_t{1} << 62,
                                         std::numeric_limits<int64_t>::max(),
                                         std::numeric_limits<int64_t>::max() / 2,
                                         std::numeric_limits<int64_t>::max() / 4 + 1,
                                         std::numeric_limits<int64_t>::min(),
                                         std::numeric_limits<int64_t>::min() + 1,
                                         -(int64_t{1} << 32)};
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: return in.ConsumeIntegralInRange<int64_t>(1, 9);
        case 1: return in.PickValueInArray(kTable);
        case 2: return in.ConsumeIntegralInRange<int64_t>(1, 300);
        default: return in.ConsumeIntegral<int64_t>();
    }
}

int64_t interesting_head_dim(FuzzedDataProvider& in) {
    return in.ConsumeBool() ? 8 * in.ConsumeIntegralInRange<int64_t>(1, 32) : interesting_int64(in);
}

// What the plan holds as far as this harness knows: updated only when a setter succeeds.
struct Model {
    bool has_shape = false, has_dtype = false;
    bool varlen = false;  // a variable-length shape: seqlen_q/_k are then the maxima
    int64_t batch = 0, seqlen_q = 0, seqlen_k = 0, heads_q = 0, heads_kv = 0, head_dim = 0;
    int64_t total_q = 0, total_k = 0;  // varlen only
    int64_t element_bytes = 4;
    std::array<std::array<int64_t, 3>, kForwardTensorCount> strides{};  // [tensor][batch, seq, head]
};

bool mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// The header's rule for flashsci_plan_set_shape, written independently of src/api.cpp.
bool shape_allowed(int64_t b, int64_t sq, int64_t sk, int64_t hq, int64_t hkv, int64_t d) {
    if (b < 1 || sq < 1 || sk < 1 || hq < 1 || hkv < 1) return false;
    if (d < 8 || d > 256 || d % 8 != 0 || hq % hkv != 0) return false;
    int64_t n = 4;  // bytes of the widest element
    for (int64_t x : {b, sq, hq, d})
        if (!mul(n, x, &n)) return false;
    n = 4;
    for (int64_t x : {b, sk, hkv, d})
        if (!mul(n, x, &n)) return false;
    return true;
}

// The header's rule for flashsci_plan_set_varlen_shape, written independently of src/api.cpp.
bool varlen_shape_allowed(int64_t b, int64_t tq, int64_t tk, int64_t mq, int64_t mk, int64_t hq, int64_t hkv,
                          int64_t d) {
    constexpr int64_t kOffsetLimit = int64_t{1} << 31;
    if (b < 1 || tq < 1 || tk < 1 || mq < 1 || mk < 1 || hq < 1 || hkv < 1) return false;
    if (d < 8 || d > 256 || d % 8 != 0 || hq % hkv != 0) return false;
    if (tq >= kOffsetLimit || tk >= kOffsetLimit || mq > tq || mk > tk) return false;
    // Element counts of the packed tensors and of the batch x max_seqlen grid, in bytes of the widest element.
    const std::array<std::array<int64_t, 4>, 4> counts{{{1, tq, hq, d}, {1, tk, hkv, d}, {b, mq, hq, d}, {b, mk, hkv, d}}};
    for (const auto& dims : counts) {
        int64_t n = 4;
        for (int64_t x : dims)
            if (!mul(n, x, &n)) return false;
    }
    return true;
}

// The header's rule for offsets: [0] == 0, nondecreasing, at most total, consecutive ones at most max apart.
bool offsets_allowed(const std::vector<int32_t>& cu, int64_t total, int64_t max_seqlen) {
    if (cu[0] != 0) return false;
    for (size_t b = 1; b < cu.size(); ++b)
        if (cu[b] < cu[b - 1] || cu[b] > total || int64_t(cu[b]) - cu[b - 1] > max_seqlen) return false;
    return true;
}

struct Extent {
    int64_t batch, seqlen, heads;
};

// The rows a tensor's strides reach: [batch, seqlen, heads], or varlen [total, heads] as one sequence.
Extent extent_of(const Model& m, int tensor) {
    if (tensor == FLASHSCI_TENSOR_K || tensor == FLASHSCI_TENSOR_V)
        return m.varlen ? Extent{1, m.total_k, m.heads_kv} : Extent{m.batch, m.seqlen_k, m.heads_kv};
    return m.varlen ? Extent{1, m.total_q, m.heads_q} : Extent{m.batch, m.seqlen_q, m.heads_q};
}

// Elements a tensor's buffer needs (largest offset + 1), or -1 when that overflows or passes the cap.
int64_t elements_needed(const Model& m, int tensor) {
    const Extent e = extent_of(m, tensor);
    const auto& s = m.strides[size_t(tensor)];
    int64_t total = m.head_dim, term = 0;
    const int64_t extents[3] = {e.batch, e.seqlen, e.heads};
    for (int i = 0; i < 3; ++i) {
        if (!mul(extents[i] - 1, s[size_t(i)], &term) || __builtin_add_overflow(total, term, &total)) return -1;
    }
    return total <= kMaxBufferElements ? total : -1;
}

struct Buffer {
    std::vector<unsigned char> bytes;
    unsigned char* data() { return bytes.data(); }
};

void set_contiguous(Model& m) {
    const int64_t d = m.head_dim;
    const int64_t q_batch = m.varlen ? 0 : m.seqlen_q * m.heads_q * d, k_batch = m.varlen ? 0 : m.seqlen_k * m.heads_kv * d;
    m.strides[FLASHSCI_TENSOR_Q] = m.strides[FLASHSCI_TENSOR_O] = {q_batch, m.heads_q * d, d};
    m.strides[FLASHSCI_TENSOR_K] = m.strides[FLASHSCI_TENSOR_V] = {k_batch, m.heads_kv * d, d};
}

// Marks the elements of o's buffer that a forward may write: o's layout, and for a varlen forward
// only the rows some sequence owns (`owned_rows`, one flag per token; empty for a dense forward).
std::vector<char> o_layout_mask(const Model& m, size_t elements, const std::vector<char>& owned_rows) {
    std::vector<char> inside(elements, 0);
    const auto& s = m.strides[FLASHSCI_TENSOR_O];
    const Extent e = extent_of(m, FLASHSCI_TENSOR_O);
    for (int64_t b = 0; b < e.batch; ++b)
        for (int64_t i = 0; i < e.seqlen; ++i) {
            if (!owned_rows.empty() && !owned_rows[size_t(i)]) continue;
            for (int64_t h = 0; h < e.heads; ++h)
                for (int64_t d = 0; d < m.head_dim; ++d) inside[size_t(b * s[0] + i * s[1] + h * s[2] + d)] = 1;
        }
    return inside;
}

// int32 offsets of `batch` sequences over `total` tokens: mostly valid, sometimes hostile in any entry.
std::vector<int32_t> fuzz_offsets(FuzzedDataProvider& in, int64_t batch, int64_t total, int64_t max_seqlen) {
    std::vector<int32_t> cu(size_t(batch + 1), 0);
    for (size_t b = 1; b < cu.size(); ++b) {
        const int64_t room = std::min<int64_t>(max_seqlen, total - cu[b - 1]);
        cu[b] = int32_t(cu[b - 1] + in.ConsumeIntegralInRange<int64_t>(0, std::max<int64_t>(room, 0)));
    }
    const int hostile = in.ConsumeIntegralInRange<int>(0, 3);
    for (int n = 0; n < hostile; ++n) {
        static constexpr int32_t kTable[] = {-1, 1, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()};
        const size_t at = in.ConsumeIntegralInRange<size_t>(0, cu.size() - 1);
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0: cu[at] = in.PickValueInArray(kTable); break;
            case 1: cu[at] = int32_t(total + in.ConsumeIntegralInRange<int64_t>(0, 2)); break;  // at or past the total
            case 2: cu[at] = int32_t(std::min<int64_t>(total, (at > 0 ? cu[at - 1] : 0) + max_seqlen + 1)); break;
            default: cu[at] = in.ConsumeIntegral<int32_t>(); break;
        }
    }
    return cu;
}

void fill_inputs(FuzzedDataProvider& in, Buffer& buffer) {
    // Mostly small finite values, with the fuzzer's own bytes (NaN, Inf, huge, subnormal) mixed in.
    const std::vector<uint8_t> raw = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 64));
    uint32_t state = in.ConsumeIntegral<uint32_t>() | 1u;
    for (size_t i = 0; i < buffer.bytes.size(); ++i) {
        state ^= state << 13, state ^= state >> 17, state ^= state << 5;
        buffer.bytes[i] = (i % 2 == 1) ? uint8_t(0x3c | (state & 0x01)) : uint8_t(state);  // ~1.0 in fp16/bf16
    }
    for (size_t i = 0; i < raw.size() && !buffer.bytes.empty(); ++i)
        buffer.bytes[(size_t(raw[i]) * 2654435761u + i) % buffer.bytes.size()] = raw[i];
}

// flashsci_forward, or flashsci_forward_varlen (mostly on varlen plans, sometimes on dense ones, which it must
// refuse, as flashsci_forward must refuse varlen plans), with buffers sized for the plan and hostile pointers.
void fuzz_forward(FuzzedDataProvider& in, flashsci_plan_t plan, const Model& m) {
    const bool complete = m.has_shape && m.has_dtype;
    const bool call_varlen = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? !m.varlen : m.varlen;
    int64_t need[4] = {-1, -1, -1, -1};
    int64_t work = 0;
    if (complete) {
        for (int t = 0; t < 4; ++t) need[t] = elements_needed(m, t);
        if (!mul(m.batch * m.heads_q, m.seqlen_q, &work) || !mul(work, m.seqlen_k, &work) ||
            !mul(work, m.head_dim, &work))
            work = -1;
    }
    const int64_t lse_rows = m.varlen ? m.total_q : m.batch * m.seqlen_q;
    const bool sized = complete && need[0] > 0 && need[1] > 0 && need[2] > 0 && need[3] > 0 && work > 0 &&
                       work <= kMaxWork && m.batch <= kMaxBufferElements && m.heads_q * lse_rows <= kMaxBufferElements;
    if (!sized) {
        // Without buffers of the right size only calls that must fail before touching memory are allowed.
        if (!complete)
            EXPECT(CALL(flashsci_forward(plan, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr)) ==
                   FLASHSCI_STATUS_INVALID_VALUE);
        return;
    }

    const size_t bytes = size_t(m.element_bytes);
    const size_t lse_count = size_t(m.heads_q * lse_rows);
    constexpr size_t kSlack = 8;  // room for a misaligned pointer inside the allocation
    Buffer q{std::vector<unsigned char>(size_t(need[0]) * bytes + kSlack)};
    Buffer k{std::vector<unsigned char>(size_t(need[1]) * bytes + kSlack)};
    Buffer v{std::vector<unsigned char>(size_t(need[2]) * bytes + kSlack)};
    Buffer o{std::vector<unsigned char>(size_t(need[3]) * bytes + kSlack, kPoison)};
    Buffer lse{std::vector<unsigned char>(lse_count * sizeof(float) + kSlack, kPoison)};
    fill_inputs(in, q), fill_inputs(in, k), fill_inputs(in, v);
    // Offsets for flashsci_forward_varlen (of a dense plan's batch when it is called on one).
    const int64_t total_q = m.varlen ? m.total_q : m.seqlen_q, total_k = m.varlen ? m.total_k : m.seqlen_k;
    std::vector<int32_t> cu_q = fuzz_offsets(in, m.batch, total_q, m.seqlen_q);
    std::vector<int32_t> cu_k = in.ConsumeBool() && total_q == total_k ? cu_q : fuzz_offsets(in, m.batch, total_k, m.seqlen_k);
    const bool offsets_valid = offsets_allowed(cu_q, total_q, m.seqlen_q) && offsets_allowed(cu_k, total_k, m.seqlen_k);

    // Each pointer: the right buffer (mostly), NULL, misaligned, or (outputs) aliasing another tensor.
    auto choose = [&](Buffer& own, unsigned char* alias) -> unsigned char* {
        switch (in.ConsumeIntegralInRange<int>(0, 7)) {
            case 0: return nullptr;
            case 1: return own.data() + 1;
            case 2: return alias != nullptr ? alias : own.data();
            default: return own.data();
        }
    };
    const void* qp = choose(q, nullptr);
    const void* kp = choose(k, nullptr);
    const void* vp = choose(v, nullptr);
    void* op = choose(o, in.ConsumeBool() ? q.data() : v.data());
    unsigned char* lse_choice = in.ConsumeBool() ? nullptr : choose(lse, in.ConsumeBool() ? o.data() : k.data());
    float* lsep = reinterpret_cast<float*>(lse_choice);
    // Offsets: the array (mostly), NULL, misaligned, or inside o (an output overlapping them).
    auto choose_offsets = [&](std::vector<int32_t>& own) -> const int32_t* {
        switch (in.ConsumeIntegralInRange<int>(0, 9)) {
            case 0: return nullptr;
            case 1: return reinterpret_cast<const int32_t*>(reinterpret_cast<const unsigned char*>(own.data()) + 2);
            case 2:  // when o's buffer holds as many int32 as the offsets (a shorter one could not be read)
                return o.bytes.size() >= own.size() * sizeof(int32_t) ? reinterpret_cast<const int32_t*>(o.data())
                                                                       : own.data();
            default: return own.data();
        }
    };
    const int32_t* cu_qp = choose_offsets(cu_q);
    const int32_t* cu_kp = choose_offsets(cu_k);
    // The CPU backend needs no workspace: whatever is passed is never touched.
    void* workspace = in.ConsumeBool() ? nullptr : reinterpret_cast<void*>(uintptr_t(in.ConsumeIntegral<uint32_t>()));
    const size_t workspace_bytes = in.ConsumeIntegral<size_t>();
    const auto stream = in.ConsumeIntegralInRange<int>(0, 9) == 0
                            ? reinterpret_cast<flashsci_stream_t>(uintptr_t(in.ConsumeIntegralInRange<int>(1, 4096)))
                            : nullptr;

    const std::vector<unsigned char> o_before = o.bytes, lse_before = lse.bytes;
    const flashsci_status_t status =
        call_varlen ? CALL(flashsci_forward_varlen(plan, qp, kp, vp, op, lsep, cu_qp, cu_kp, workspace, workspace_bytes,
                                                   stream))
                    : CALL(flashsci_forward(plan, qp, kp, vp, op, lsep, workspace, workspace_bytes, stream));

    const bool all_proper = qp == q.data() && kp == k.data() && vp == v.data() && op == o.data() &&
                            (lsep == nullptr || lse_choice == lse.data()) && stream == nullptr &&
                            (!call_varlen || (cu_qp == cu_q.data() && cu_kp == cu_k.data()));
    if (call_varlen != m.varlen || (call_varlen && !offsets_valid)) EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
    else if (all_proper) EXPECT(status == FLASHSCI_STATUS_SUCCESS);
    if (status != FLASHSCI_STATUS_SUCCESS) {
        EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
        EXPECT(o.bytes == o_before);
        EXPECT(lse.bytes == lse_before);
        return;
    }
    // Success: nothing outside o's layout (or the sequences' rows), nor past lse's rows (or outside the sequences').
    std::vector<char> owned_rows;
    if (m.varlen) {
        owned_rows.assign(size_t(m.total_q), 0);
        for (size_t b = 0; b + 1 < cu_q.size(); ++b)
            for (int32_t t = cu_q[b]; t < cu_q[b + 1]; ++t) owned_rows[size_t(t)] = 1;
    }
    if (op == o.data()) {
        const std::vector<char> inside = o_layout_mask(m, size_t(need[3]), owned_rows);
        for (size_t e = 0; e < inside.size(); ++e)
            if (!inside[e])
                for (size_t b = 0; b < bytes; ++b) EXPECT(o.bytes[e * bytes + b] == kPoison);
        for (size_t b = size_t(need[3]) * bytes; b < o.bytes.size(); ++b) EXPECT(o.bytes[b] == kPoison);
    }
    if (lsep != nullptr && !owned_rows.empty())
        for (size_t e = 0; e < lse_count; ++e)
            if (!owned_rows[e % size_t(m.total_q)])
                for (size_t b = 0; b < sizeof(float); ++b) EXPECT(lse.bytes[e * sizeof(float) + b] == kPoison);
    for (size_t b = lse_count * sizeof(float); b < lse.bytes.size(); ++b) EXPECT(lse.bytes[b] == kPoison);
}

void fuzz_set_shape(FuzzedDataProvider& in, flashsci_plan_t plan, Model& m) {
    int64_t b, sq, sk, hq, hkv, d;
    if (in.ConsumeBool()) {  // small, mostly valid
        b = in.ConsumeIntegralInRange<int64_t>(1, 3), sq = in.ConsumeIntegralInRange<int64_t>(1, 70);
        sk = in.ConsumeIntegralInRange<int64_t>(1, 70), hkv = in.ConsumeIntegralInRange<int64_t>(1, 3);
        hq = hkv * in.ConsumeIntegralInRange<int64_t>(1, 3), d = 8 * in.ConsumeIntegralInRange<int64_t>(1, 8);
        if (in.ConsumeIntegralInRange<int>(0, 7) == 0) hq += 1;  // sometimes not a multiple of heads_kv
    } else {
        b = interesting_int64(in), sq = interesting_int64(in), sk = interesting_int64(in);
        hq = interesting_int64(in), hkv = interesting_int64(in), d = interesting_head_dim(in);
    }
    const flashsci_status_t status = CALL(flashsci_plan_set_shape(plan, b, sq, sk, hq, hkv, d));
    EXPECT((status == FLASHSCI_STATUS_SUCCESS) == (plan != nullptr && shape_allowed(b, sq, sk, hq, hkv, d)));
    if (status != FLASHSCI_STATUS_SUCCESS) {
        EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
        return;
    }
    m.has_shape = true, m.varlen = false, m.total_q = m.total_k = 0;
    m.batch = b, m.seqlen_q = sq, m.seqlen_k = sk, m.heads_q = hq, m.heads_kv = hkv, m.head_dim = d;
    set_contiguous(m);
}

void fuzz_set_varlen_shape(FuzzedDataProvider& in, flashsci_plan_t plan, Model& m) {
    int64_t b, tq, tk, mq, mk, hq, hkv, d;
    if (in.ConsumeBool()) {  // small, mostly valid
        b = in.ConsumeIntegralInRange<int64_t>(1, 5), tq = in.ConsumeIntegralInRange<int64_t>(1, 90);
        tk = in.ConsumeIntegralInRange<int64_t>(1, 90), mq = in.ConsumeIntegralInRange<int64_t>(1, tq + 1);
        mk = in.ConsumeIntegralInRange<int64_t>(1, tk + 1), hkv = in.ConsumeIntegralInRange<int64_t>(1, 3);
        hq = hkv * in.ConsumeIntegralInRange<int64_t>(1, 3), d = 8 * in.ConsumeIntegralInRange<int64_t>(1, 8);
    } else {
        b = interesting_int64(in), tq = interesting_int64(in), tk = interesting_int64(in);
        mq = interesting_int64(in), mk = interesting_int64(in), hq = interesting_int64(in);
        hkv = interesting_int64(in), d = interesting_head_dim(in);
    }
    const flashsci_status_t status = CALL(flashsci_plan_set_varlen_shape(plan, b, tq, tk, mq, mk, hq, hkv, d));
    EXPECT((status == FLASHSCI_STATUS_SUCCESS) == (plan != nullptr && varlen_shape_allowed(b, tq, tk, mq, mk, hq, hkv, d)));
    if (status != FLASHSCI_STATUS_SUCCESS) {
        EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
        return;
    }
    m.has_shape = true, m.varlen = true, m.total_q = tq, m.total_k = tk;
    m.batch = b, m.seqlen_q = mq, m.seqlen_k = mk, m.heads_q = hq, m.heads_kv = hkv, m.head_dim = d;
    set_contiguous(m);
}

// Window, softcap and ALiBi: any window sides and softcap bits; slopes (heads_q of them, or NULL) when they fit.
void fuzz_features(FuzzedDataProvider& in, flashsci_plan_t plan, const Model& m) {
    switch (in.ConsumeIntegralInRange<int>(0, 2)) {
        case 0: {
            const int64_t left = in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(-2, 300) : in.ConsumeIntegral<int64_t>();
            const int64_t right = in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(-2, 300) : in.ConsumeIntegral<int64_t>();
            const flashsci_status_t status = CALL(flashsci_plan_set_window(plan, left, right));
            EXPECT((status == FLASHSCI_STATUS_SUCCESS) == (plan != nullptr && left >= -1 && right >= -1));
            break;
        }
        case 1: {
            const uint32_t bits = in.ConsumeIntegral<uint32_t>();
            float softcap;
            std::memcpy(&softcap, &bits, sizeof softcap);  // NaN, Inf, subnormal, negative zero
            const flashsci_status_t status = CALL(flashsci_plan_set_softcap(plan, softcap));
            const bool allowed = plan != nullptr && softcap >= 0.0f && softcap <= std::numeric_limits<float>::max();
            EXPECT((status == FLASHSCI_STATUS_SUCCESS) == allowed);
            break;
        }
        default: {
            const bool fits = m.has_shape && m.heads_q <= kMaxBufferElements;
            std::vector<float> slopes(size_t(fits ? m.heads_q : 0));
            for (float& x : slopes) x = in.ConsumeFloatingPoint<float>();
            const bool null = !fits || in.ConsumeBool();
            const flashsci_status_t status = CALL(flashsci_plan_set_alibi_slopes(plan, null ? nullptr : slopes.data()));
            if (plan == nullptr) EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
            else if (null) EXPECT(status == FLASHSCI_STATUS_SUCCESS);
            break;
        }
    }
}

void fuzz_set_strides(FuzzedDataProvider& in, flashsci_plan_t plan, Model& m) {
    // -1 and kTensorCount lie outside flashsci_tensor_t; Q, K, V, O (0-3) are modelled, the backward's DO, DQ, DK,
    // DV (4-7) only checked for their status.
    const int tensor = in.ConsumeIntegralInRange<int>(-1, kTensorCount);
    int64_t s[3];
    const int style = in.ConsumeIntegralInRange<int>(0, 2);
    const int64_t d = m.has_shape ? m.head_dim : 8;
    if (style == 0 && m.has_shape && tensor >= 0 && tensor < 4) {
        // A layout that fits: BHSD, padded rows, or a broadcast (stride 0) dimension.
        const Extent e = extent_of(m, tensor);
        const int64_t pad = in.ConsumeIntegralInRange<int64_t>(0, 16);
        switch (in.ConsumeIntegralInRange<int>(0, 2)) {
            case 0: s[0] = e.heads * e.seqlen * d, s[1] = d, s[2] = e.seqlen * d; break;
            case 1: s[0] = e.seqlen * (e.heads * d + pad), s[1] = e.heads * d + pad, s[2] = d; break;
            default: s[0] = 0, s[1] = e.heads * d, s[2] = in.ConsumeBool() ? 0 : d; break;
        }
        if (m.varlen && in.ConsumeIntegralInRange<int>(0, 3) != 0) s[0] = 0;  // mostly the batch stride it needs
    } else if (style == 1) {
        for (int64_t& x : s) x = in.ConsumeIntegralInRange<int64_t>(0, 600);
    } else {
        for (int64_t& x : s) x = interesting_int64(in);
    }
    const flashsci_status_t status =
        CALL(flashsci_plan_set_strides(plan, static_cast<flashsci_tensor_t>(tensor), s[0], s[1], s[2]));
    if (tensor < 0 || tensor >= kTensorCount || !m.has_shape || s[0] < 0 || s[1] < 0 || s[2] < 0 ||
        (m.varlen && s[0] != 0))
        EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
    if (status != FLASHSCI_STATUS_SUCCESS) {
        EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
        return;
    }
    if (tensor < kForwardTensorCount) m.strides[size_t(tensor)] = {s[0], s[1], s[2]};
}

void fuzz_queries(FuzzedDataProvider& in, flashsci_plan_t plan, const Model& m) {
    size_t workspace = 0xdead;
    const char* name = nullptr;
    flashsci_backend_t backend = FLASHSCI_BACKEND_AUTO;
    const bool null_out = in.ConsumeIntegralInRange<int>(0, 4) == 0;
    const flashsci_status_t ws = CALL(flashsci_plan_get_workspace_size(plan, null_out ? nullptr : &workspace));
    const flashsci_status_t kn = CALL(flashsci_plan_get_kernel_name(plan, null_out ? nullptr : &name));
    const flashsci_status_t be = CALL(flashsci_plan_get_backend(plan, null_out ? nullptr : &backend));
    const bool ready = plan != nullptr && m.has_shape && m.has_dtype && !null_out;
    EXPECT((ws == FLASHSCI_STATUS_SUCCESS) == ready);
    EXPECT((kn == FLASHSCI_STATUS_SUCCESS) == ready);
    EXPECT((be == FLASHSCI_STATUS_SUCCESS) == (plan != nullptr && !null_out));
    if (ready) EXPECT(workspace == 0 && name != nullptr && std::strncmp(name, "cpu_", 4) == 0);
    if (be == FLASHSCI_STATUS_SUCCESS) EXPECT(backend == FLASHSCI_BACKEND_CPU);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    flashsci_plan_t plans[kPlanSlots] = {};
    Model models[kPlanSlots];

    // Half the inputs start from a ready CPU plan with a small valid problem, so that forwards are frequent.
    if (in.ConsumeBool()) {
        EXPECT(CALL(flashsci_plan_create(&plans[0], FLASHSCI_BACKEND_CPU)) == FLASHSCI_STATUS_SUCCESS);
        const int64_t hkv = in.ConsumeIntegralInRange<int64_t>(1, 2);
        Model& m = models[0];
        m.batch = in.ConsumeIntegralInRange<int64_t>(1, 2), m.seqlen_q = in.ConsumeIntegralInRange<int64_t>(1, 40);
        m.seqlen_k = in.ConsumeIntegralInRange<int64_t>(1, 40), m.heads_kv = hkv;
        m.heads_q = hkv * in.ConsumeIntegralInRange<int64_t>(1, 2), m.head_dim = 8 * in.ConsumeIntegralInRange<int64_t>(1, 4);
        EXPECT(CALL(flashsci_plan_set_shape(plans[0], m.batch, m.seqlen_q, m.seqlen_k, m.heads_q, m.heads_kv,
                                            m.head_dim)) == FLASHSCI_STATUS_SUCCESS);
        const int dtype = in.ConsumeIntegralInRange<int>(1, 3);
        EXPECT(CALL(flashsci_plan_set_dtype(plans[0], static_cast<flashsci_dtype_t>(dtype))) == FLASHSCI_STATUS_SUCCESS);
        m.has_shape = m.has_dtype = true, m.element_bytes = dtype == 3 ? 4 : 2;
        set_contiguous(m);
    }
    for (int call = 0; call < kMaxCalls && in.remaining_bytes() > 0; ++call) {
        const int slot = in.ConsumeIntegralInRange<int>(0, kPlanSlots - 1);
        flashsci_plan_t plan = plans[slot];
        // Sometimes pass NULL where a plan belongs.
        flashsci_plan_t target = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : plan;
        Model none;
        Model& m = target != nullptr ? models[slot] : none;
        switch (in.ConsumeIntegralInRange<int>(0, 12)) {
            case 0: {  // create: any backend value; CUDA is not built, so it must say NO_DEVICE
                const int backend = in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 2) : in.ConsumeIntegral<int>();
                flashsci_plan_t created = reinterpret_cast<flashsci_plan_t>(uintptr_t(0x5a5a));
                const bool null_out = in.ConsumeIntegralInRange<int>(0, 7) == 0;
                const flashsci_status_t status = CALL(
                    flashsci_plan_create(null_out ? nullptr : &created, static_cast<flashsci_backend_t>(backend)));
                if (null_out || backend < 0 || backend > 2) EXPECT(status == FLASHSCI_STATUS_INVALID_VALUE);
                else if (backend == FLASHSCI_BACKEND_CUDA) EXPECT(status == FLASHSCI_STATUS_NO_DEVICE);
                else EXPECT(status == FLASHSCI_STATUS_SUCCESS);
                if (status != FLASHSCI_STATUS_SUCCESS) {
                    EXPECT(created == reinterpret_cast<flashsci_plan_t>(uintptr_t(0x5a5a)));
                    break;
                }
                CALL(flashsci_plan_destroy(plans[slot]));
                plans[slot] = created;
                models[slot] = Model{};
                break;
            }
            case 1:
                EXPECT(CALL(flashsci_plan_destroy(target)) == FLASHSCI_STATUS_SUCCESS);
                if (target != nullptr) plans[slot] = nullptr, models[slot] = Model{};
                break;
            case 2: fuzz_set_shape(in, target, m); break;
            case 3: {
                const int dtype = in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(1, 3) : in.ConsumeIntegral<int>();
                const flashsci_status_t status = CALL(flashsci_plan_set_dtype(target, static_cast<flashsci_dtype_t>(dtype)));
                EXPECT((status == FLASHSCI_STATUS_SUCCESS) == (target != nullptr && dtype >= 1 && dtype <= 3));
                if (status == FLASHSCI_STATUS_SUCCESS) m.has_dtype = true, m.element_bytes = dtype == 3 ? 4 : 2;
                break;
            }
            case 4: {
                const int mask = in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 2) : in.ConsumeIntegral<int>();
                const flashsci_status_t status = CALL(flashsci_plan_set_mask(target, static_cast<flashsci_mask_t>(mask)));
                EXPECT((status == FLASHSCI_STATUS_SUCCESS) == (target != nullptr && mask >= 0 && mask <= 2));
                break;
            }
            case 5: {
                float scale;
                if (in.ConsumeBool()) {
                    scale = in.ConsumeFloatingPoint<float>();
                } else {
                    const uint32_t bits = in.ConsumeIntegral<uint32_t>();
                    std::memcpy(&scale, &bits, sizeof scale);  // NaN, Inf, subnormal, negative zero
                }
                const flashsci_status_t status = CALL(flashsci_plan_set_softmax_scale(target, scale));
                const bool allowed = target != nullptr && scale > 0.0f && scale <= std::numeric_limits<float>::max();
                EXPECT((status == FLASHSCI_STATUS_SUCCESS) == allowed);
                break;
            }
            case 6: fuzz_set_strides(in, target, m); break;
            case 7: fuzz_queries(in, target, m); break;
            case 8:
                if (target != nullptr) fuzz_forward(in, target, m);
                else
                    EXPECT(CALL(flashsci_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                                 nullptr)) == FLASHSCI_STATUS_INVALID_VALUE);
                break;
            case 9: {
                const int status = in.ConsumeIntegral<int>();
                EXPECT(flashsci_status_string(static_cast<flashsci_status_t>(status)) != nullptr);
                EXPECT(flashsci_last_error() != nullptr);
                EXPECT(flashsci_version() == FLASHSCI_VERSION && flashsci_version_string() != nullptr);
                break;
            }
            case 10: fuzz_features(in, target, m); break;
            case 11: fuzz_set_varlen_shape(in, target, m); break;
            default:  // forward is the call that touches memory: give it more weight
                if (plan != nullptr) fuzz_forward(in, plan, models[slot]);
                break;
        }
    }
    for (flashsci_plan_t plan : plans) CALL(flashsci_plan_destroy(plan));
    return 0;
}
