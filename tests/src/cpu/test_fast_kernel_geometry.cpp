// The fast path's template at the AVX-512 geometry (16 lanes, 12-row register tiles, 32-wide panels) on generic
// vectors, against fp64: the width-dependent logic of cpu_avx512 checked on any CPU (its intrinsics are not).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/simd_portable.h"
#include "cpu/fast_kernel.h"
#include "reference.h"
#include "tensors.h"

using namespace flashsci::test;
namespace cpu = flashsci::cpu;

namespace {

using Avx512Geometry = cpu::simd::PortableVectors<cpu::kAvx512Tile.lanes, cpu::kAvx512Tile.rows>;
constexpr int64_t kGroupRows = 24;  // as the driver's
constexpr int64_t kTileKeys = 64;   // two panels, so that tiles and panels both have tails

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

flashsci::kernels::Element element_of(flashsci_dtype_t dtype) {
    return dtype == FLASHSCI_DTYPE_FLOAT32 ? flashsci::kernels::Element::f32
           : dtype == FLASHSCI_DTYPE_BFLOAT16 ? flashsci::kernels::Element::bf16
                                              : flashsci::kernels::Element::f16;
}

// Runs batch 1, one head, seqlen_q × seqlen_k, as work items of block_rows rows; returns O and the LSE.
void run(const Shape& s, flashsci_mask_t mask, const HostTensor& q, const HostTensor& k, const HostTensor& v,
         int64_t block_rows, HostTensor& o, std::vector<float>& lse) {
    cpu::FastProblem f{};
    f.element = element_of(q.dtype());
    f.head_dim = s.head_dim;
    f.padded_dims = round_up(s.head_dim, cpu::kAvx512Tile.width);
    f.block_rows = block_rows;
    f.group_rows = kGroupRows;
    f.tile_keys = kTileKeys;
    f.micro_width = cpu::kAvx512Tile.width;
    f.scale = float(1.0 / std::sqrt(double(s.head_dim)));
    const int64_t ld = f.padded_dims;
    auto floats = [](int64_t n) { return std::vector<float>(static_cast<size_t>(n)); };
    std::vector<float> queries = floats(block_rows * ld), out = floats(block_rows * ld), row_sum = floats(block_rows),
                       query_norm2 = floats(block_rows), keys = floats(kTileKeys * s.head_dim),
                       values = floats(kTileKeys * ld), key_rows = floats(f.micro_width * ld),
                       key_norm2 = floats(kTileKeys), scores = floats(kGroupRows * kTileKeys),
                       correction = floats(kGroupRows);
    std::vector<double> row_max(static_cast<size_t>(block_rows)), precise(static_cast<size_t>(kTileKeys));
    cpu::FastScratch w{};
    w.queries = queries.data(), w.out = out.data(), w.row_max = row_max.data(), w.row_sum = row_sum.data();
    w.query_norm2 = query_norm2.data(), w.keys = keys.data(), w.values = values.data(), w.key_rows = key_rows.data();
    w.key_norm2 = key_norm2.data(), w.scores = scores.data(), w.correction = correction.data();
    w.precise = precise.data();
    const int64_t bytes = int64_t(dtype_bytes(q.dtype()));
    const int64_t diagonal = mask == FLASHSCI_MASK_CAUSAL ? 0
                             : mask == FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT ? s.seqlen_k - s.seqlen_q
                                                                        : s.seqlen_k;
    for (int64_t first = 0; first < s.seqlen_q; first += block_rows) {
        cpu::FastBlock b{};
        b.q = static_cast<const char*>(q.data()) + bytes * first * s.head_dim;
        b.o = static_cast<char*>(o.data()) + bytes * first * s.head_dim;
        b.k = k.data(), b.v = v.data();
        b.q_row_stride = b.o_row_stride = b.k_row_stride = b.v_row_stride = s.head_dim;
        b.lse = lse.data() + first;
        b.first_row = first, b.rows = std::min(block_rows, s.seqlen_q - first), b.len_k = s.seqlen_k;
        b.band_first = -(s.seqlen_q + s.seqlen_k), b.band_last = diagonal;
        cpu::run_fast_block<Avx512Geometry>(f, b, w);
    }
}

}  // namespace

TEST_CASE("fast path at the AVX-512 geometry (generic vectors) matches fp64", "[cpu][isa]") {
    std::mt19937_64 rng(fresh_seed());
    const auto lengths = GENERATE(std::make_pair(1, 1), std::make_pair(17, 17), std::make_pair(129, 129),
                                  std::make_pair(40, 150), std::make_pair(150, 40));
    for (const int64_t head_dim : {8, 40, 64, 72, 128})
        for (flashsci_mask_t mask : {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT})
            for (flashsci_dtype_t dtype : {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32}) {
                const Shape s{1, lengths.first, lengths.second, 1, 1, head_dim};
                INFO("seqlen " << s.seqlen_q << "/" << s.seqlen_k << ", head_dim " << head_dim << ", mask "
                               << int(mask) << ", " << dtype_name(dtype));
                HostTensor q(dtype, size_t(s.seqlen_q * head_dim)), k(dtype, size_t(s.seqlen_k * head_dim)),
                    v(dtype, size_t(s.seqlen_k * head_dim)), o(dtype, size_t(s.seqlen_q * head_dim));
                q.fill_random(rng), k.fill_random(rng), v.fill_random(rng);
                o.poison();
                std::vector<float> lse(size_t(s.seqlen_q), std::nanf(""));
                run(s, mask, q, k, v, round_up(std::min<int64_t>(s.seqlen_q, 2 * kGroupRows), cpu::kAvx512Tile.rows),
                    o, lse);
                const Layout lq = contiguous_layout(s.seqlen_q, 1, head_dim), lk = contiguous_layout(s.seqlen_k, 1, head_dim);
                double worst = 0, largest = 0, worst_lse = 0;
                int64_t empty_mismatches = 0;
                for (int64_t i = 0; i < s.seqlen_q; ++i) {
                    const RowResult want = reference_row(s, mask, 1.0 / std::sqrt(double(head_dim)), q, lq, k, lk, v, lk, 0, 0, i);
                    if (std::isinf(want.lse)) {
                        bool ok = lse[size_t(i)] == want.lse;
                        for (int64_t d = 0; d < head_dim; ++d) ok = ok && o.get(size_t(i * head_dim + d)) == 0.0;
                        empty_mismatches += !ok;
                        continue;
                    }
                    worst_lse = std::max(worst_lse, std::isnan(lse[size_t(i)]) ? INFINITY : std::fabs(lse[size_t(i)] - want.lse));
                    for (int64_t d = 0; d < head_dim; ++d) {
                        const double got = o.get(size_t(i * head_dim + d));
                        worst = std::max(worst, std::isnan(got) ? INFINITY : std::fabs(got - want.out[size_t(d)]));
                        largest = std::max(largest, std::fabs(want.out[size_t(d)]));
                    }
                }
                INFO("max |O - fp64| " << worst << " (max |O| " << largest << "), LSE error " << worst_lse);
                const bool fp32 = dtype == FLASHSCI_DTYPE_FLOAT32;
                CHECK(worst <= (fp32 ? 1e-5 : 1e-2) * std::max(largest, 1e-30));
                CHECK(worst_lse <= (fp32 ? 1e-5 : 1e-3));
                CHECK(empty_mismatches == 0);
            }
}
