// The general backward's index math (kernels/general/backward_schedule.h) against brute force, on the CPU: which
// query blocks a key block meets, which tiles need no mask, how key blocks are split, and the workspace layout.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "general/backward_schedule.h"

using namespace flashsci::kernels;
using namespace flashsci::kernels::general;

namespace {

Problem dense_problem(int64_t batch, int64_t seqlen_q, int64_t seqlen_k, int64_t heads_q, int64_t heads_kv,
                      int64_t head_dim) {
    Problem p{};
    p.batch = batch, p.seqlen_q = seqlen_q, p.seqlen_k = seqlen_k;
    p.heads_q = heads_q, p.heads_kv = heads_kv, p.head_dim = head_dim;
    p.mask = Mask::none;
    p.window_left = p.window_right = -1;
    return p;
}

bool sees(const KeyBand& band, int64_t i, int64_t j, int64_t len_q, int64_t len_k) {
    return i >= 0 && i < len_q && j >= 0 && j < len_k && i + band.first <= j && j <= i + band.last;
}

// Random masks, windows and lengths (some empty, some far apart) for the band tests.
struct BandCase {
    Problem p;
    int64_t len_q, len_k;
};
BandCase random_band_case(std::mt19937_64& rng) {
    std::uniform_int_distribution<int64_t> length(0, 150), window(-1, 40), mask(0, 2);
    Problem p = dense_problem(1, 1, 1, 1, 1, 64);
    p.mask = Mask(int(mask(rng)));
    p.window_left = window(rng);
    p.window_right = window(rng);
    const int64_t len_q = length(rng), len_k = length(rng);
    return {p, len_q, len_k};
}

}  // namespace

TEST_CASE("backward: query_blocks holds exactly the blocks of the rows that see a key of the key block",
          "[kernels][backward]") {
    std::mt19937_64 rng(20261207);
    for (int trial = 0; trial < 3000; ++trial) {
        const BandCase c = random_band_case(rng);
        const KeyBand band = key_band(c.p, c.len_q, c.len_k);
        for (const int64_t rows : {16, 32})
            for (const int64_t keys : {16, 32, 64})
                for (int64_t k0 = 0; k0 < c.len_k + keys; k0 += keys) {
                    int64_t lo = -1, hi = -1;  // the first and last row that sees a key of the block
                    for (int64_t i = 0; i < c.len_q; ++i)
                        for (int64_t j = k0; j < k0 + keys; ++j)
                            if (sees(band, i, j, c.len_q, c.len_k)) {
                                if (lo < 0) lo = i;
                                hi = i;
                            }
                    const BlockRange got = query_blocks(band, k0, keys, c.len_q, c.len_k, rows);
                    INFO("trial " << trial << " mask " << int(c.p.mask) << " window " << c.p.window_left << "/"
                                  << c.p.window_right << " len " << c.len_q << "x" << c.len_k << " rows " << rows
                                  << " keys " << keys << " k0 " << k0);
                    if (lo < 0) {
                        CHECK(got.first == got.end);
                    } else {
                        CHECK(got.first == lo / rows);
                        CHECK(got.end == hi / rows + 1);
                    }
                }
    }
}

TEST_CASE("backward: tile_inside_band is true exactly for tiles with no masked score", "[kernels][backward]") {
    std::mt19937_64 rng(7);
    for (int trial = 0; trial < 3000; ++trial) {
        const BandCase c = random_band_case(rng);
        const KeyBand band = key_band(c.p, c.len_q, c.len_k);
        const int64_t rows = 16, keys = 32;
        for (int64_t q0 = 0; q0 < c.len_q; q0 += rows)
            for (int64_t k0 = 0; k0 < c.len_k; k0 += keys) {
                bool whole = true;
                for (int64_t i = q0; i < std::min(q0 + rows, c.len_q); ++i)
                    for (int64_t j = k0; j < std::min(k0 + keys, c.len_k); ++j)
                        whole = whole && sees(band, i, j, c.len_q, c.len_k);
                INFO("trial " << trial << " q0 " << q0 << " k0 " << k0);
                CHECK(tile_inside_band(band, q0, rows, k0, keys, c.len_q, c.len_k) == whole);
            }
    }
}

TEST_CASE("backward: every key block belongs to exactly one split", "[kernels][backward]") {
    for (const bool deterministic : {false, true})
        for (const int64_t seqlen_k : {1, 17, 64, 65, 1000, 131072})
            for (const int64_t pairs : {1, 3, 64, 5000})
                for (const int num_sms : {1, 108, 132}) {
                    const Problem p = dense_problem(pairs, 100, seqlen_k, 2, 1, 64);
                    const int keys = backward_tile_shape(64).keys;
                    const BackwardSchedule s = backward_schedule(p, deterministic, num_sms, keys);
                    INFO("deterministic " << deterministic << " seqlen_k " << seqlen_k << " pairs " << pairs << " sms "
                                          << num_sms);
                    CHECK(s.key_blocks == (seqlen_k + keys - 1) / keys);
                    CHECK(s.splits >= 1);
                    CHECK(s.splits <= s.key_blocks);
                    CHECK(s.slices == (deterministic ? s.splits : 1));
                    CHECK(s.slices <= kMaxDeterministicSlices * deterministic + !deterministic);
                    // the kernel's loop: split s walks k0 = s·keys, (s + splits)·keys, ... below seqlen_k
                    std::vector<int> owners(size_t(s.key_blocks), 0);
                    for (int64_t split = 0; split < s.splits; ++split)
                        for (int64_t k0 = split * keys; k0 < seqlen_k; k0 += s.splits * keys)
                            ++owners[size_t(k0 / keys)];
                    CHECK(std::all_of(owners.begin(), owners.end(), [](int n) { return n == 1; }));
                }
}

TEST_CASE("backward: D and the dQ accumulator slices lie apart inside the workspace", "[kernels][backward]") {
    for (const bool deterministic : {false, true})
        for (const bool varlen : {false, true}) {
            Problem p = dense_problem(3, 37, 300, 4, 2, 40);
            std::vector<int32_t> cu_q{0, 10, 10, 45}, cu_k{0, 100, 100, 300};  // sequence 1 is empty
            if (varlen) {
                p.varlen = true;
                p.total_q = cu_q.back();
                p.total_k = cu_k.back();
                p.cu_seqlens_q = cu_q.data();
                p.cu_seqlens_k = cu_k.data();
            }
            const BackwardSchedule s = backward_schedule(p, deterministic, 4, backward_tile_shape(64).keys);
            INFO("deterministic " << deterministic << " varlen " << varlen);
            CHECK(s.dq_accum_offset % kWorkspaceAlignment == 0);
            CHECK(s.dq_accum_offset >= size_t(s.row_dot_count) * sizeof(float));
            CHECK(s.bytes == s.dq_accum_offset + size_t(s.slices * s.dq_rows * p.heads_q * p.head_dim) * sizeof(float));
            if (deterministic) CHECK(s.slices > 1);  // 2 CTAs per SM on 4 SMs over 6 (sequence, kv head) pairs

            std::set<int64_t> row_dot, accum;  // every (row, head) has its own D and, per slice, its own row
            size_t rows = 0;
            for (int64_t b = 0; b < p.batch; ++b) {
                const Sequence seq = sequence(p, b);
                for (int64_t h = 0; h < p.heads_q; ++h)
                    for (int64_t i = 0; i < seq.len_q; ++i) {
                        ++rows;
                        const int64_t at = lse_index(p, seq, b, h, i);
                        CHECK(at >= 0);
                        CHECK(at < s.row_dot_count);
                        row_dot.insert(at);
                        for (int64_t slice = 0; slice < s.slices; ++slice) {
                            const int64_t first = dq_accum_index(p, s, seq, slice, b, h, i);
                            CHECK(first >= 0);
                            CHECK(s.dq_accum_offset + size_t(first + p.head_dim) * sizeof(float) <= s.bytes);
                            CHECK(first % p.head_dim == 0);
                            accum.insert(first);
                        }
                    }
            }
            CHECK(row_dot.size() == rows);
            CHECK(accum.size() == rows * size_t(s.slices));
        }
}

TEST_CASE("backward: the workspace reads no pointer of the problem", "[kernels][backward]") {
    Problem p = dense_problem(4, 1000, 1000, 8, 2, 128);
    p.varlen = true;
    p.total_q = p.total_k = 2500;  // cu_seqlens stay null: the host cannot read device offsets
    const BackwardSchedule s = backward_schedule(p, true, 132, backward_tile_shape(128).keys);
    CHECK(s.dq_rows == 2500);
    CHECK(s.row_dot_count == 8 * 2500);
    CHECK(s.bytes > 0);
}
