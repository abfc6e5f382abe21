// The split-key decoding kernel (forced with FLASHSCI_KERNEL=decode) against the CPU backend on the same fresh
// random inputs: every head dim, dtype, mask and query-rows-per-kv-head it covers, long key ranges split over
// many CTAs, the plan features, varlen batches, the NaN policy, determinism, and select_kernel's choice of it.
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "feature_cases.h"
#include "gpu_cases.h"
#include "varlen_gpu_cases.h"

using namespace flashsci::test;
using namespace flashsci::test::gpu;
namespace vl = flashsci::test::varlen;

namespace {

const Path kDecode{"decode", "cuda_decode"};
const Path kAutomaticDecode{"", "cuda_decode"};  // FLASHSCI_KERNEL empty: select_kernel's own choice
constexpr flashsci_dtype_t kHalfDtypes[] = {FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT16};
constexpr int64_t kDecodeHeadDims[] = {8, 40, 64, 72, 128, 200, 256};
constexpr int64_t kSeqlensK[] = {1, 17, 127, 129, 1000, 4097};

// (heads_q, heads_kv, seqlen_q): 1 to 16 query rows per kv head, MHA, GQA and MQA.
struct Rows {
    int64_t heads_q, heads_kv, seqlen_q;
};
constexpr Rows kRows[] = {{1, 1, 1}, {4, 1, 1}, {8, 2, 1}, {32, 8, 1}, {16, 1, 1}, {8, 4, 2}, {4, 1, 3}, {2, 1, 8}};

Case dense(flashsci_dtype_t dtype, int64_t batch, const Rows& r, int64_t seqlen_k, int64_t head_dim,
           flashsci_mask_t mask) {
    return {dtype, {batch, r.seqlen_q, seqlen_k, r.heads_q, r.heads_kv, head_dim}, mask};
}

// The kernel `FLASHSCI_KERNEL=<force>` selects for c (no pointers: the choice assumes aligned ones).
std::string kernel_for(const char* force, const Case& c) {
    const ScopedEnvironment environment("FLASHSCI_KERNEL", force);
    Plan plan(FLASHSCI_BACKEND_CUDA);
    configure(plan, c, place(c));
    const char* kernel = nullptr;
    REQUIRE_FLASHSCI(flashsci_plan_get_kernel_name(plan, &kernel));
    return kernel;
}

bool decodes(const char* kernel) { return std::string(kernel).rfind("cuda_decode", 0) == 0; }

bool identical(const Outputs& a, const Outputs& b) {
    return a.o.size_bytes() == b.o.size_bytes() && std::memcmp(a.o.data(), b.o.data(), a.o.size_bytes()) == 0 &&
           a.lse.size() == b.lse.size() && std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0;
}

// One decode plan and its device buffers; each forward uploads the given inputs and poisons O, LSE and the
// workspace first (the workspace is scratch: its previous contents must not matter).
class DecodeRun {
public:
    explicit DecodeRun(const Case& c) : c_(c), pl_(place(c)) {
        {
            const ScopedEnvironment force("FLASHSCI_KERNEL", kDecode.force);  // read at plan creation
            plan_ = std::make_unique<Plan>(FLASHSCI_BACKEND_CUDA);
        }
        configure(*plan_, c, pl_);
        workspace_bytes_ = checked_workspace_bytes(kDecode, *plan_);
        input_ = std::make_unique<DeviceBuffer>(pl_.input_count * dtype_bytes(c.dtype));
        o_ = std::make_unique<DeviceBuffer>(o_bytes());
        lse_ = std::make_unique<DeviceBuffer>(lse_bytes());
        workspace_ = std::make_unique<DeviceBuffer>(workspace_bytes_);
    }

    Outputs forward(const HostTensor& in, cudaStream_t stream) const {
        const size_t bytes = dtype_bytes(c_.dtype);
        unsigned char* d = input_->get();
        REQUIRE_CUDA(cudaMemcpy(d, in.data(), in.size_bytes(), cudaMemcpyHostToDevice));
        REQUIRE_CUDA(cudaMemsetAsync(o_->get(), 0xff, o_bytes(), stream));
        REQUIRE_CUDA(cudaMemsetAsync(lse_->get(), 0xff, lse_bytes(), stream));
        if (workspace_bytes_ > 0) REQUIRE_CUDA(cudaMemsetAsync(workspace_->get(), 0xff, workspace_bytes_, stream));
        REQUIRE_FLASHSCI(flashsci_forward(*plan_, d + pl_.q_offset * bytes, d + pl_.k_offset * bytes,
                                          d + pl_.v_offset * bytes, o_->get(), reinterpret_cast<float*>(lse_->get()),
                                          workspace_->get(), workspace_bytes_, stream));
        REQUIRE_CUDA(cudaStreamSynchronize(stream));
        Outputs out = poisoned_outputs(c_, pl_);
        REQUIRE_CUDA(cudaMemcpy(out.o.data(), o_->get(), o_bytes(), cudaMemcpyDeviceToHost));
        REQUIRE_CUDA(cudaMemcpy(out.lse.data(), lse_->get(), lse_bytes(), cudaMemcpyDeviceToHost));
        return out;
    }

    const Placement& placement() const { return pl_; }

private:
    size_t o_bytes() const { return output_bytes(c_, pl_); }
    size_t lse_bytes() const { return lse_count(c_) * sizeof(float); }

    Case c_;
    Placement pl_;
    std::unique_ptr<Plan> plan_;
    std::unique_ptr<DeviceBuffer> input_, o_, lse_, workspace_;
    size_t workspace_bytes_ = 0;
};

HostTensor random_input(const Case& c, const Placement& pl, std::mt19937_64& rng) {
    HostTensor in(c.dtype, pl.input_count);
    in.fill_random(rng);
    return in;
}

// Decoding sequences: one query token each, keys 0, 1, 5000 and random lengths up to 5000.
vl::Case decoding_batch(flashsci_dtype_t dtype, flashsci_mask_t mask, int64_t head_dim, std::mt19937_64& rng) {
    constexpr int64_t kMaxKeys = 5000;
    vl::Case c;
    c.dtype = dtype, c.mask = mask, c.head_dim = head_dim;
    c.heads_q = 32, c.heads_kv = 8;
    c.lens_k = {0, 1, kMaxKeys};
    std::uniform_int_distribution<int64_t> keys(0, kMaxKeys);
    while (c.lens_k.size() < 8) c.lens_k.push_back(keys(rng));
    std::shuffle(c.lens_k.begin(), c.lens_k.end(), rng);
    c.lens_q.assign(c.lens_k.size(), 1);
    return c;
}

// ---- the NaN policy ----

// A NaN in k or v at one key of one kv head of one batch.
struct Injection {
    enum Tensor { k, v } tensor;
    int64_t batch, key, head, column;
};

bool sees(const Case& c, const Injection& x, int64_t b, int64_t i, int64_t h) {
    if (b != x.batch || h / (c.shape.heads_q / c.shape.heads_kv) != x.head) return false;
    const KeyRange keys = visible_keys(c.shape, c.mask, features_of(c, h), i);
    return keys.first <= x.key && x.key <= keys.last;
}

// flashsci.h's policy against the CPU backend on the same (dirty) inputs and the clean decode run:
// NaN in v[key, column] → column `column` of the rows that see it is NaN, their other columns and LSE match;
// NaN in k[key] → all of O and LSE of those rows NaN; every other row finite and matching (bit for bit the
// clean run for k, where no tile multiplies a non-finite v).
void check_policy(const Case& c, const Placement& pl, const Injection& x, const Outputs& clean, const Outputs& gpu,
                  const Outputs& cpu, int64_t expected_reached) {
    const Shape& s = c.shape;
    double max_want = 0;
    for (size_t e = 0; e < pl.output_count; ++e)
        if (std::isfinite(cpu.o.get(e))) max_want = std::max(max_want, std::fabs(cpu.o.get(e)));
    Mismatches bad;
    int64_t reached_rows = 0;
    for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t h = 0; h < s.heads_q; ++h)
            for (int64_t i = 0; i < s.seqlen_q; ++i) {
                const bool reached = sees(c, x, b, i, h);
                reached_rows += reached;
                const size_t l = size_t((b * s.heads_q + h) * s.seqlen_q + i);
                for (int64_t d = 0; d < s.head_dim; ++d) {
                    const size_t e = pl.o.offset(b, i, h) + size_t(d);
                    const double got = gpu.o.get(e), want = cpu.o.get(e);
                    bool ok;
                    if (reached && (x.tensor == Injection::k || d == x.column))
                        ok = std::isnan(got);
                    else if (x.tensor == Injection::k)
                        ok = std::memcmp(static_cast<const char*>(clean.o.data()) + e * dtype_bytes(c.dtype),
                                         static_cast<const char*>(gpu.o.data()) + e * dtype_bytes(c.dtype),
                                         dtype_bytes(c.dtype)) == 0;
                    else
                        ok = output_close(c.dtype, got, want, max_want);
                    bad.add(ok, [&] { return where("O", b, i, h, got, want) + " at column " + std::to_string(d); });
                }
                bool lse_ok;
                if (x.tensor == Injection::v)
                    lse_ok = lse_close(row_is_blind(c, i), gpu.lse[l], cpu.lse[l]);
                else if (reached)
                    lse_ok = std::isnan(gpu.lse[l]);
                else
                    lse_ok = std::memcmp(&clean.lse[l], &gpu.lse[l], sizeof(float)) == 0;
                bad.add(lse_ok, [&] { return where("LSE", b, i, h, gpu.lse[l], cpu.lse[l]); });
            }
    INFO("NaN in " << (x.tensor == Injection::k ? "k" : "v") << "[" << x.batch << ", " << x.key << ", " << x.head
                   << ", " << x.column << "], seen by " << reached_rows << " rows; " << bad.count()
                   << " mismatches; first: " << bad.first());
    CHECK(reached_rows == expected_reached);
    CHECK(bad.count() == 0);
}

}  // namespace

// Every head dim and dtype under every mask and seqlen_k, the query-rows shape and batch rotating.
TEST_CASE("decode: every head dim, dtype, mask and seqlen_k matches the CPU backend", "[gpu][decode]") {
    if (!decode_available()) return;
    size_t block = 0;  // of (head dim, dtype): shifts the rotation, so each mask and seqlen_k meets every shape
    for (const int64_t head_dim : kDecodeHeadDims)
        for (const flashsci_dtype_t dtype : kHalfDtypes) {
            size_t n = block++;
            for (const flashsci_mask_t mask : kMasks)
                for (const int64_t seqlen_k : kSeqlensK) {
                    check_case(kDecode, dense(dtype, int64_t(1 + (n + block) % 3), kRows[n % std::size(kRows)],
                                              seqlen_k, head_dim, mask));
                    ++n;
                }
        }
}

// Every rows-per-kv-head shape against every seqlen_k (seqlen_q > seqlen_k leaves causal rows without keys).
TEST_CASE("decode: every heads/seqlen_q shape at every seqlen_k and mask", "[gpu][decode]") {
    if (!decode_available()) return;
    size_t n = 0;
    for (const Rows& rows : kRows)
        for (const int64_t seqlen_k : kSeqlensK)
            for (const flashsci_mask_t mask : kMasks) {
                check_case(kDecode, dense(kHalfDtypes[n % 2], int64_t(1 + n % 3), rows, seqlen_k, 128, mask));
                ++n;
            }
}

// Batch 1 and one kv head: the keys are split over as many CTAs as the kernel takes, and merged by LSE.
TEST_CASE("decode: 70000 and 131073 keys split over many CTAs", "[gpu][decode]") {
    if (!decode_available()) return;
    for (const int64_t seqlen_q : {1, 2})
        for (const int64_t seqlen_k : {70000, 131073})
            for (const flashsci_mask_t mask : kMasks)
                check_case(kDecode, {FLASHSCI_DTYPE_BFLOAT16, {1, seqlen_q, seqlen_k, 8, 1, 128}, mask});
}

TEST_CASE("decode: sliding windows under every mask match the CPU backend", "[gpu][decode][features]") {
    if (!decode_available()) return;
    const Shape shapes[] = {{2, 1, 17, 8, 2, 64}, {2, 2, 1000, 8, 2, 128}, {1, 4, 4097, 8, 2, 256}};
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const Shape& shape : shapes)
            for (const flashsci_mask_t mask : kMasks)
                for (const auto& window : kWindows) check_case(kDecode, windowed(dtype, shape, mask, window));
}

// Narrow windows over 70000 keys: most splits see no key at all, and their partials must not disturb the merge.
TEST_CASE("decode: narrow windows over many splits", "[gpu][decode][features]") {
    if (!decode_available()) return;
    const std::pair<int64_t, int64_t> windows[] = {{0, 0}, {255, 100}, {5000, 0}, {-1, 3}};
    for (const flashsci_mask_t mask : kMasks)
        for (const auto& window : windows)
            check_case(kDecode, windowed(FLASHSCI_DTYPE_BFLOAT16, {1, 2, 70000, 8, 1, 128}, mask, window));
}

TEST_CASE("decode: softcap matches the CPU backend", "[gpu][decode][features]") {
    if (!decode_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const float softcap : {1.0f, kSoftcap, 50.0f}) {
                Case c{dtype, {2, 2, 1000, 8, 1, 128}, mask};
                c.softcap = softcap;
                check_case(kDecode, c);
            }
}

// ALiBi over short and split key ranges: the bias grows with the distance to the diagonal across splits.
TEST_CASE("decode: ALiBi matches the CPU backend", "[gpu][decode][features]") {
    if (!decode_available()) return;
    const Shape shapes[] = {{2, 1, 1000, 32, 8, 128}, {1, 2, 70000, 8, 1, 64}, {3, 3, 17, 4, 1, 72}};
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const Shape& shape : shapes) {
                Case c{dtype, shape, mask};
                c.alibi_slopes = alibi_slopes(shape.heads_q);
                check_case(kDecode, c);
            }
}

TEST_CASE("decode: window, softcap and ALiBi together, BHSD, a custom scale, in a CUDA graph",
          "[gpu][decode][features]") {
    if (!decode_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const auto& window : kWindows) {
                Case c = windowed(dtype, {2, 2, 3000, 8, 2, 128}, mask, window);
                c.storage = Storage::bhsd;
                c.scale = 0.3f;
                c.softcap = kSoftcap;
                c.alibi_slopes = alibi_slopes(c.shape.heads_q);
                check_case(kDecode, c, Launch::graph);
            }
}

// BHSD strides, and one packed QKV tensor (seqlen_q = seqlen_k, so short) with padded output rows, no LSE once.
TEST_CASE("decode: BHSD strides and packed QKV with padded output rows", "[gpu][decode]") {
    if (!decode_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const int64_t head_dim : {40, 72, 128, 256})
            for (const flashsci_mask_t mask : kMasks) {
                check_case(kDecode, {dtype, {2, 2, 1000, 8, 2, head_dim}, mask, Storage::bhsd});
                check_case(kDecode, {dtype, {2, 4, 4, 8, 2, head_dim}, mask, Storage::packed_qkv});
                check_case(kDecode, {dtype, {3, 16, 16, 2, 2, head_dim}, mask, Storage::packed_qkv});
                check_case(kDecode, {dtype, {1, 8, 8, 4, 2, head_dim}, mask, Storage::packed_qkv, 0.0f, false});
            }
}

// One query token per sequence, keys 0 to 5000 (empty sequences get O = 0, LSE = -inf).
TEST_CASE("decode varlen: one query token per sequence, 0 to 5000 keys, every mask, dtype and head dim",
          "[gpu][decode][varlen]") {
    if (!decode_available()) return;
    const uint64_t seed = fresh_seed();
    INFO("lengths from seed " << seed);
    std::mt19937_64 rng(seed);
    for (const int64_t head_dim : {64, 128, 256})
        for (const flashsci_dtype_t dtype : kHalfDtypes)
            for (const flashsci_mask_t mask : kMasks) vl::check_case(kDecode, decoding_batch(dtype, mask, head_dim, rng));
}

// 0, 1 or 2 query tokens per sequence (up to 4 · 2 = 8 rows per kv head; max_seqlen_q raised to 4 once: 16 rows),
// tokens past the last sequence left untouched, and a packed QKV tensor.
TEST_CASE("decode varlen: 0 to 2 query tokens per sequence, spare tokens, packed QKV", "[gpu][decode][varlen]") {
    if (!decode_available()) return;
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const bool padded : {false, true}) {
                vl::Case c;
                c.dtype = dtype, c.mask = mask, c.heads_q = 8, c.heads_kv = 2, c.head_dim = 128;
                c.lens_q = {1, 0, 2, 2, 1, 2, 0};
                c.lens_k = {3000, 17, 1, 0, 2, 700, 0};
                if (padded) c.spare_q = 3, c.spare_k = 5, c.max_extra_q = 2;
                vl::check_case(kDecode, c);
            }
    for (const flashsci_dtype_t dtype : kHalfDtypes) {
        vl::Case c;
        c.dtype = dtype, c.mask = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, c.storage = vl::Storage::packed_qkv;
        c.heads_q = 8, c.heads_kv = 2, c.head_dim = 64;
        c.lens_q = c.lens_k = {1, 2, 0, 2, 1};
        c.spare_q = c.spare_k = 2;
        vl::check_case(kDecode, c);
    }
}

TEST_CASE("decode varlen: window, softcap and ALiBi per sequence, in a CUDA graph",
          "[gpu][decode][varlen][features]") {
    if (!decode_available()) return;
    const uint64_t seed = fresh_seed();
    INFO("lengths from seed " << seed);
    std::mt19937_64 rng(seed);
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const flashsci_mask_t mask : kMasks)
            for (const auto& [left, right] : kWindows) {
                vl::Case c = decoding_batch(dtype, mask, 128, rng);
                c.window_left = left, c.window_right = right;
                c.softcap = kSoftcap;
                c.alibi_slopes = alibi_slopes(c.heads_q);
                vl::check_case(kDecode, c, Launch::graph);
            }
}

// A NaN in v at a key one query row sees and its neighbour row does not; at a masked key next to the band (no
// 0 · NaN); a NaN in k at a seen key, and at a key no row sees (nothing changes, bit for bit).
TEST_CASE("decode: a NaN reaches only the rows that see it", "[gpu][decode]") {
    if (!decode_available()) return;
    struct Scenario {
        flashsci_mask_t mask;
        std::pair<int64_t, int64_t> window;
        int64_t seqlen_q, seqlen_k;
    };
    const Scenario scenarios[] = {
        {FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, {16, 0}, 2, 1000},  // row 0 sees keys 982-998, row 1 keys 983-999
        {FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, {16, 0}, 1, 70000},
        {FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, {16, 0}, 2, 70000},
        {FLASHSCI_MASK_NONE, {16, 0}, 2, 4097},
        {FLASHSCI_MASK_CAUSAL, {-1, -1}, 2, 1000},  // row 0 sees key 0, row 1 keys 0-1
    };
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const uint64_t seed = fresh_seed();
    INFO("inputs from seed " << seed);
    std::mt19937_64 rng(seed);
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const Scenario& sc : scenarios) {
            const Case c = windowed(dtype, {2, sc.seqlen_q, sc.seqlen_k, 8, 2, 128}, sc.mask, sc.window);
            INFO(describe(c));
            const DecodeRun run(c);
            const Placement& pl = run.placement();
            const HostTensor in = random_input(c, pl, rng);
            const Stream stream;
            const Outputs clean = run.forward(in, stream.get());
            compare(c, pl, clean, run_cpu(c, pl, in));

            // The last row's last key (the first row does not see it when seqlen_q is 2), and the nearest key
            // outside every row's band.
            const int64_t last_row = sc.seqlen_q - 1;
            const KeyRange first = visible_keys(c.shape, c.mask, features_of(c, 0), 0);
            const KeyRange last = visible_keys(c.shape, c.mask, features_of(c, 0), last_row);
            const int64_t seen = last.last, unseen = last.last + 1 < sc.seqlen_k ? last.last + 1 : first.first - 1;
            REQUIRE((unseen >= 0 && unseen < sc.seqlen_k));
            const int64_t rows_seeing = [&] {
                int64_t rows = 0;
                for (int64_t i = 0; i < sc.seqlen_q; ++i) {
                    const KeyRange keys = visible_keys(c.shape, c.mask, features_of(c, 0), i);
                    rows += keys.first <= seen && seen <= keys.last;
                }
                return rows;
            }();
            REQUIRE((sc.seqlen_q == 1 || rows_seeing < sc.seqlen_q));
            const int64_t group = c.shape.heads_q / c.shape.heads_kv;
            const std::pair<Injection, int64_t> injections[] = {
                {{Injection::v, 1, seen, 1, 77}, rows_seeing * group},
                {{Injection::v, 1, unseen, 1, 77}, 0},
                {{Injection::k, 1, seen, 1, 5}, rows_seeing * group},
                {{Injection::k, 1, unseen, 1, 5}, 0},
            };
            for (const auto& [x, expected_reached] : injections) {
                HostTensor dirty = in;
                const size_t base = x.tensor == Injection::k ? pl.k_offset : pl.v_offset;
                const Layout& layout = x.tensor == Injection::k ? pl.k : pl.v;
                dirty.set(base + layout.offset(x.batch, x.key, x.head) + size_t(x.column), nan);
                check_policy(c, pl, x, clean, run.forward(dirty, stream.get()), run_cpu(c, pl, dirty),
                             expected_reached);
            }
        }
}

// Two forwards of one plan on the same inputs (another stream, the workspace re-poisoned) give the same bits.
TEST_CASE("decode: the same inputs on one plan give bit-identical outputs across many splits", "[gpu][decode]") {
    if (!decode_available()) return;
    const uint64_t seed = fresh_seed();
    INFO("inputs from seed " << seed);
    std::mt19937_64 rng(seed);
    const Shape shapes[] = {{1, 1, 70000, 32, 8, 128}, {1, 2, 70000, 8, 1, 128}};
    for (const flashsci_dtype_t dtype : kHalfDtypes)
        for (const Shape& shape : shapes)
            for (const flashsci_mask_t mask : kMasks) {
                const Case c{dtype, shape, mask};
                INFO(describe(c));
                const DecodeRun run(c);
                const HostTensor in = random_input(c, run.placement(), rng);
                const Stream first_stream, second_stream;
                const Outputs first = run.forward(in, first_stream.get());
                compare(c, run.placement(), first, run_cpu(c, run.placement(), in));
                CHECK(identical(run.forward(in, second_stream.get()), first));
            }
}

// Automatic selection: the decoding shape takes the decoding kernel (and computes right); 128 query rows per kv
// head · 4 and fp32 do not.
TEST_CASE("decode: select_kernel picks the decoding kernel for decoding shapes only", "[gpu][decode][quick]") {
    if (!decode_available()) return;
    for (const flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
        check_case(kAutomaticDecode, {FLASHSCI_DTYPE_BFLOAT16, {4, 1, 16384, 32, 8, 128}, mask});
    const Case prefill{FLASHSCI_DTYPE_BFLOAT16, {4, 128, 16384, 32, 8, 128}, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
    const Case fp32{FLASHSCI_DTYPE_FLOAT32, {4, 1, 16384, 32, 8, 128}, FLASHSCI_MASK_NONE};
    for (const Case& c : {prefill, fp32}) {
        const std::string kernel = kernel_for("", c);
        INFO(describe(c) << ": kernel " << kernel);
        CHECK_FALSE(decodes(kernel.c_str()));
    }
}

// Forced onto problems outside its support (fp32; 17 and 32 rows per kv head), every query and the forward
// fail with NOT_SUPPORTED and a message, and nothing is written.
TEST_CASE("decode: FLASHSCI_KERNEL=decode refuses what the kernel cannot run", "[gpu][decode][quick]") {
    const Case unsupported[] = {{FLASHSCI_DTYPE_FLOAT32, {1, 1, 1000, 8, 2, 128}, FLASHSCI_MASK_NONE},
                                {FLASHSCI_DTYPE_BFLOAT16, {1, 17, 1000, 1, 1, 128}, FLASHSCI_MASK_NONE},
                                {FLASHSCI_DTYPE_FLOAT16, {1, 2, 1000, 16, 1, 64}, FLASHSCI_MASK_CAUSAL}};
    for (const Case& c : unsupported) {
        INFO(describe(c));
        const ScopedEnvironment force("FLASHSCI_KERNEL", "decode");
        Plan plan(FLASHSCI_BACKEND_CUDA);
        const Placement pl = place(c);
        configure(plan, c, pl);
        const char* kernel = nullptr;
        const flashsci_status_t named = flashsci_plan_get_kernel_name(plan, &kernel);
        const std::string message = flashsci_last_error();
        size_t workspace_bytes = 0;
        const flashsci_status_t sized = flashsci_plan_get_workspace_size(plan, &workspace_bytes);
        const size_t bytes = dtype_bytes(c.dtype);
        const size_t lse_bytes = lse_count(c) * sizeof(float);
        DeviceBuffer d_in(pl.input_count * bytes), d_o(pl.output_count * bytes), d_lse(lse_bytes);
        REQUIRE_CUDA(cudaMemset(d_in.get(), 0, pl.input_count * bytes));
        REQUIRE_CUDA(cudaMemset(d_o.get(), 0xff, pl.output_count * bytes));
        const flashsci_status_t forwarded =
            flashsci_forward(plan, d_in.get() + pl.q_offset * bytes, d_in.get() + pl.k_offset * bytes,
                             d_in.get() + pl.v_offset * bytes, d_o.get(), reinterpret_cast<float*>(d_lse.get()),
                             nullptr, 0, nullptr);
        INFO("message: " << message);
        CHECK(named == FLASHSCI_STATUS_NOT_SUPPORTED);
        CHECK(message.find("decod") != std::string::npos);
        CHECK(sized == FLASHSCI_STATUS_NOT_SUPPORTED);
        CHECK(forwarded == FLASHSCI_STATUS_NOT_SUPPORTED);
        REQUIRE_CUDA(cudaDeviceSynchronize());
        HostTensor o(c.dtype, pl.output_count);
        REQUIRE_CUDA(cudaMemcpy(o.data(), d_o.get(), o.size_bytes(), cudaMemcpyDeviceToHost));
        CHECK(o.is_poisoned());
    }
}

// k or v one element past 16-byte alignment: the plan still names the decoding kernel (its choice assumes aligned
// pointers), the automatic forward falls back and matches the CPU backend, and the forced one refuses.
TEST_CASE("decode: a misaligned k or v pointer falls back to a correct result", "[gpu][decode][quick]") {
    if (!decode_available()) return;
    const uint64_t seed = fresh_seed();
    INFO("inputs from seed " << seed);
    std::mt19937_64 rng(seed);
    for (const Shape& shape : {Shape{2, 1, 1000, 32, 8, 128}, Shape{1, 2, 4097, 8, 1, 64}})
        for (const bool misaligned_k : {true, false}) {
            const Case c{FLASHSCI_DTYPE_BFLOAT16, shape, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT};
            INFO(describe(c) << (misaligned_k ? ", k" : ", v") << " one element off");
            Placement pl = place(c);  // BSHD: q, k, v back to back; v moved 16 bytes on to make room
            pl.v_offset += 8, pl.input_count += 16;
            (misaligned_k ? pl.k_offset : pl.v_offset) += 1;
            const HostTensor in = random_input(c, pl, rng);
            compare(c, pl, run_cuda(kAutomaticDecode, c, pl, in), run_cpu(c, pl, in));

            const ScopedEnvironment force("FLASHSCI_KERNEL", "decode");
            Plan plan(FLASHSCI_BACKEND_CUDA);
            configure(plan, c, pl);
            const size_t workspace_bytes = checked_workspace_bytes(kDecode, plan);
            DeviceBuffer d_in(in.size_bytes()), d_o(output_bytes(c, pl)), d_lse(lse_count(c) * sizeof(float)),
                workspace(workspace_bytes);
            REQUIRE_CUDA(cudaMemcpy(d_in.get(), in.data(), in.size_bytes(), cudaMemcpyHostToDevice));
            const flashsci_status_t status =
                flashsci_forward(plan, d_in.get() + pl.q_offset * 2, d_in.get() + pl.k_offset * 2,
                                 d_in.get() + pl.v_offset * 2, d_o.get(), reinterpret_cast<float*>(d_lse.get()),
                                 workspace.get(), workspace_bytes, nullptr);
            INFO("forced: " << flashsci_status_string(status) << ": " << flashsci_last_error());
            CHECK(status == FLASHSCI_STATUS_NOT_SUPPORTED);
            REQUIRE_CUDA(cudaDeviceSynchronize());
        }
}
