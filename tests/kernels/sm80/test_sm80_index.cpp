// The sm_80 forward's index math on the CPU (kernels/sm80/index.h): the swizzled shared layout, the tile-load
// assignment, ldmatrix's lane addresses against the mma.sync fragments they must produce, P's C-to-A hand-over, and
// the key-tile schedule against a brute force of the reference's visible keys.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "mask_trials.h"
#include "reference.h"
#include "sm80/index.h"
#include "sm80/tiles.h"

using namespace flashsci::kernels;
using namespace flashsci::kernels::sm80;

namespace {

constexpr int kChunkCounts[] = {8, 16, 32};  // the buckets' 16-byte chunks per row (64, 128, 256)
constexpr int kLanes = 32;
constexpr int kBankGroups = 8;  // 16-byte groups of the 32 four-byte banks

// A 16-row, 16-column block of 16-bit elements stored swizzled like a shared tile of `chunks` chunks per row, whose
// element (r, c) holds the code r·256 + c, so a read names the element it got.
struct Block {
    int chunks;
    std::vector<int> memory;  // element offset -> code
    explicit Block(int chunks_) : chunks(chunks_), memory(size_t(16 * chunks_ * kChunkElems), -1) {
        for (int r = 0; r < 16; ++r)
            for (int col = 0; col < 16; ++col)
                memory[size_t(swizzled_offset(chunks, r, col / kChunkElems) + col % kChunkElems)] = r * 256 + col;
    }
};
int code_row(int code) { return code / 256; }
int code_col(int code) { return code % 256; }

// What ldmatrix.x4 gives lane l in register i, as the two codes of its 16-bit halves (low first): lanes 8i..8i+7 name
// the rows (row, chunk) of matrix i; non-transposed, lane l gets row l/4's elements 2(l%4), 2(l%4)+1; transposed,
// elements (row 2(l%4), column l/4) and (row 2(l%4)+1, column l/4).
std::pair<int, int> ldmatrix(const Block& block, RowCol (*address)(int), int lane, int i, bool transposed) {
    const auto element = [&](int matrix_row, int col) {
        const RowCol at = address(8 * i + matrix_row);
        return block.memory[size_t(swizzled_offset(block.chunks, at.row, at.col) + col)];
    };
    const int l4 = lane / 4, c = lane % 4;
    if (!transposed) return {element(l4, 2 * c), element(l4, 2 * c + 1)};
    return {element(2 * c, l4), element(2 * c + 1, l4)};
}

}  // namespace

TEST_CASE("sm80 index: the swizzle is a bijection of each tile and conflict-free for ldmatrix", "[sm80]") {
    for (const int chunks : kChunkCounts)
        for (const int rows : {16, 64, 128}) {
            INFO("chunks " << chunks << " rows " << rows);
            std::set<int> seen;
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < chunks; ++c) {
                    const int offset = swizzled_offset(chunks, r, c);
                    CHECK(offset % kChunkElems == 0);
                    CHECK(offset >= r * chunks * kChunkElems);  // it stays in its row
                    CHECK(offset < (r + 1) * chunks * kChunkElems);
                    seen.insert(offset);
                    // the decomposition the kernel uses for its per-lane addresses
                    CHECK(offset == row_offset(chunks, r) + (c - c % kSwizzleRows) * kChunkElems +
                                        group_column(c % kSwizzleRows, r % kSwizzleRows));
                }
            CHECK(int(seen.size()) == rows * chunks);
            // one ldmatrix matrix: 8 consecutive rows from a multiple of 8, one logical chunk -> 8 bank groups
            for (int r0 = 0; r0 < rows; r0 += kSwizzleRows)
                for (int c = 0; c < chunks; ++c) {
                    std::set<int> groups;
                    for (int r = r0; r < r0 + kSwizzleRows; ++r)
                        groups.insert(swizzled_offset(chunks, r, c) / kChunkElems % kBankGroups);
                    CHECK(groups.size() == size_t(kSwizzleRows));
                }
        }
}

TEST_CASE("sm80 index: tile loads cover each chunk once with one shared column per thread", "[sm80]") {
    for (const int threads : {64, 128, 256})
        for (const int chunks : kChunkCounts) {
            const LoadAssignment a = load_assignment(threads, chunks);
            INFO("threads " << threads << " chunks " << chunks);
            REQUIRE(a.row_step * a.col_step == threads);
            REQUIRE(a.row_step % kSwizzleRows == 0);
            REQUIRE(chunks % a.col_step == 0);
            const int rows = 128;
            std::vector<int> hits(size_t(rows * chunks), 0);
            for (int t = 0; t < threads; ++t) {
                const RowCol first = load_first(threads, chunks, t);
                const int shared_first = swizzled_offset(chunks, first.row, first.col);
                for (int i = 0; i < rows / a.row_step; ++i)
                    for (int j = 0; j < chunks / a.col_step; ++j) {
                        const int row = first.row + i * a.row_step, chunk = first.col + j * a.col_step;
                        ++hits[size_t(row * chunks + chunk)];
                        CHECK(shared_first + row_offset(chunks, i * a.row_step) + j * a.col_step * kChunkElems ==
                              swizzled_offset(chunks, row, chunk));
                    }
            }
            for (const int h : hits) CHECK(h == 1);
        }
}

TEST_CASE("sm80 index: fragment maps match the PTX ISA's m16n8k16 layout", "[sm80]") {
    for (int lane = 0; lane < kLanes; ++lane) {
        const int g = lane / 4, c = lane % 4;
        const RowCol want_c[4] = {{g, 2 * c}, {g, 2 * c + 1}, {g + 8, 2 * c}, {g + 8, 2 * c + 1}};
        const RowCol want_a[4] = {{g, 2 * c}, {g + 8, 2 * c}, {g, 2 * c + 8}, {g + 8, 2 * c + 8}};
        const RowCol want_b[2] = {{2 * c, g}, {2 * c + 8, g}};
        for (int i = 0; i < 4; ++i) {
            CHECK(c_element(lane, i).row == want_c[i].row);
            CHECK(c_element(lane, i).col == want_c[i].col);
            CHECK(a_pair(lane, i).row == want_a[i].row);
            CHECK(a_pair(lane, i).col == want_a[i].col);
        }
        for (int r = 0; r < 2; ++r) {
            CHECK(b_pair(lane, r).row == want_b[r].row);
            CHECK(b_pair(lane, r).col == want_b[r].col);
        }
    }
}

TEST_CASE("sm80 index: ldmatrix of Q, K and V gives the A and B fragments", "[sm80]") {
    for (const int chunks : kChunkCounts) {
        const Block block(chunks);  // rows 0-15, columns 0-15 (chunks 0 and 1)
        for (int lane = 0; lane < kLanes; ++lane) {
            INFO("chunks " << chunks << " lane " << lane);
            for (int i = 0; i < 4; ++i) {
                // Q (rows = query rows, columns = k): register i is A register i
                const auto [q_lo, q_hi] = ldmatrix(block, q_address, lane, i, false);
                const RowCol a = a_pair(lane, i);
                CHECK(code_row(q_lo) == a.row);
                CHECK(code_col(q_lo) == a.col);
                CHECK(code_row(q_hi) == a.row);
                CHECK(code_col(q_hi) == a.col + 1);
                // K (rows = keys = n, columns = k): register i is B register i % 2 of n block i / 2
                const auto [k_lo, k_hi] = ldmatrix(block, k_address, lane, i, false);
                const RowCol bk = b_pair(lane, i % 2);  // {k, n}
                CHECK(code_row(k_lo) == (i / 2) * 8 + bk.col);
                CHECK(code_col(k_lo) == bk.row);
                CHECK(code_row(k_hi) == (i / 2) * 8 + bk.col);
                CHECK(code_col(k_hi) == bk.row + 1);
                // V (rows = keys = k, columns = head_dim = n), transposed: B register i % 2 of head_dim block i / 2
                const auto [v_lo, v_hi] = ldmatrix(block, v_address, lane, i, true);
                const RowCol bv = b_pair(lane, i % 2);
                CHECK(code_row(v_lo) == bv.row);
                CHECK(code_col(v_lo) == (i / 2) * 8 + bv.col);
                CHECK(code_row(v_hi) == bv.row + 1);
                CHECK(code_col(v_hi) == (i / 2) * 8 + bv.col);
            }
        }
    }
}

TEST_CASE("sm80 index: fp32 rows through ldmatrix give the tf32 A and B fragments", "[sm80]") {
    // A 16-row tile of `chunks` 4-float chunks per row, swizzled; ldmatrix moves 32-bit words: lane l gets word
    // (l / 4, l % 4) of matrix l / 8's rows, i.e. float l % 4 of the chunk that row names.
    for (const int chunks : {16, 32, 64}) {
        const auto word = [&](RowCol (*address)(int), int lane, int i) {
            const RowCol at = address(8 * i + lane / 4);
            return RowCol{at.row, at.col * 4 + lane % 4};  // the (row, float column) it reads
        };
        for (int lane = 0; lane < kLanes; ++lane) {
            INFO("chunks " << chunks << " lane " << lane);
            for (int i = 0; i < 4; ++i) {
                const RowCol q = word(q_address, lane, i), a = tf32_a(lane, i);
                CHECK(q.row == a.row);
                CHECK(q.col == a.col);
                const RowCol k = word(k_address, lane, i), b = tf32_b(lane, i % 2);  // {k, n}
                CHECK(k.row == (i / 2) * 8 + b.col);
                CHECK(k.col == b.row);
            }
        }
    }
}

TEST_CASE("sm80 index: tf32 P·V relabels keys consistently in P and V", "[sm80]") {
    for (int lane = 0; lane < kLanes; ++lane) {
        const int g = lane / 4, c = lane % 4;
        INFO("lane " << lane);
        for (int r = 0; r < 4; ++r) {  // A register r: (row, k) -> key tf32_key(k) must be C element's (row, col)
            const RowCol a = tf32_a(lane, r), from = c_element(lane, tf32_p_element(r));
            CHECK(from.row == a.row);
            CHECK(from.col == tf32_key(a.col));
        }
        for (int h = 0; h < 2; ++h) {  // B register h: (k, n) -> V row tf32_key(k), the kernel loads row 2c + h
            const RowCol b = tf32_b(lane, h);
            CHECK(tf32_key(b.row) == 2 * c + h);
            CHECK(b.col == g);
        }
    }
    std::set<int> keys;
    for (int k = 0; k < 8; ++k) keys.insert(tf32_key(k));
    CHECK(keys.size() == 8u);  // a permutation of the 8 keys
}

TEST_CASE("sm80 index: the fp32 V loads and O staging address the swizzled elements they mean", "[sm80]") {
    constexpr int kFloats = 4;  // per chunk
    for (const int chunks : {16, 32, 64})
        for (int lane = 0; lane < kLanes; ++lane) {
            const int g = lane / 4, c = lane % 4;
            INFO("chunks " << chunks << " lane " << lane);
            for (int block = 0; block < 2; ++block)  // key block j: rows 8j + 2c + h; V column 8d + g
                for (int h = 0; h < 2; ++h)
                    for (int d = 0; d < chunks / 2; ++d) {
                        const int row = 8 * block + 2 * c + h, col = 8 * d + g;
                        const int kernel = row_offset(chunks, 8 * block, kFloats) + row_offset(chunks, 2 * c + h, kFloats) +
                                           d / 4 * kSwizzleRows * kFloats +
                                           group_column(2 * (d % 4) + g / 4, 2 * c + h, kFloats) + g % 4;
                        CHECK(kernel == swizzled_offset(chunks, row, col / kFloats, kFloats) + col % kFloats);
                    }
            for (int half = 0; half < 2; ++half)  // O staging: row g + 8·half, columns 8d + 2c, +1
                for (int d = 0; d < chunks / 2; ++d) {
                    const int row = g + 8 * half, col = 8 * d + 2 * c;
                    const int kernel = row_offset(chunks, g, kFloats) + row_offset(chunks, 8 * half, kFloats) +
                                       d / 4 * kSwizzleRows * kFloats + group_column(2 * (d % 4) + c / 2, g, kFloats) +
                                       2 * (c % 2);
                    CHECK(kernel == swizzled_offset(chunks, row, col / kFloats, kFloats) + col % kFloats);
                }
        }
}

TEST_CASE("sm80 index: P's C fragments are P·V's A fragments", "[sm80]") {
    for (int lane = 0; lane < kLanes; ++lane)
        for (int slab = 0; slab < 4; ++slab)
            for (int r = 0; r < 4; ++r) {
                INFO("lane " << lane << " slab " << slab << " register " << r);
                // S block p_block(slab, r) holds keys 8·block .. 8·block + 7; its elements p_element(r), +1
                const int block = p_block(slab, r);
                const RowCol lo = c_element(lane, p_element(r)), hi = c_element(lane, p_element(r) + 1);
                const RowCol a = a_pair(lane, r);  // row, k within the slab
                CHECK(lo.row == a.row);
                CHECK(hi.row == a.row);
                CHECK(8 * block + lo.col == 16 * slab + a.col);
                CHECK(8 * block + hi.col == 16 * slab + a.col + 1);
            }
}

TEST_CASE("sm80 index: key tiles and unmasked tiles against a brute force of the visible keys", "[sm80]") {
    std::mt19937_64 rng(20261207);
    std::uniform_int_distribution<int64_t> coin(0, 3);
    for (int trial = 0; trial < 1500; ++trial) {
        const flashsci::test::MaskTrial t = flashsci::test::random_mask_trial(rng, coin, trial);
        const flashsci_mask_t mask = t.mask;
        const int64_t len_q = t.len_q, len_k = t.len_k, left = t.left, right = t.right;
        const int block_m = coin(rng) < 2 ? 64 : 128, block_n = coin(rng) < 2 ? 64 : 128;
        const KeyBand full = key_band(t.problem(), len_q, len_k);
        const Band<int64_t> band{full.first, full.last};
        const Band<int> clamped = clamp_band(full, len_q, len_k);
        const flashsci::test::Shape shape = t.shape();
        const flashsci::test::Features features = t.features();
        INFO("mask " << int(mask) << " len_q " << len_q << " len_k " << len_k << " window " << left << " " << right
                     << " tile " << block_m << "x" << block_n);
        for (int64_t q0 = 0; q0 < len_q; q0 += block_m) {
            const int64_t rows = std::min<int64_t>(block_m, len_q - q0);
            const TileRange<int64_t> range = key_tiles(band, q0, rows, len_k, block_n);
            const TileRange<int> range32 = key_tiles(clamped, int(q0), int(rows), int(len_k), block_n);
            CHECK(range32.first == range.first);
            CHECK(range32.end == range.end);
            const TileRange<int64_t> clear = unmasked_tiles(band, q0, rows, len_k, block_n);
            const TileRange<int> clear32 = unmasked_tiles(clamped, int(q0), int(rows), int(len_k), block_n);
            const int64_t tiles = (len_k + block_n - 1) / block_n;
            for (int64_t kt = 0; kt < tiles; ++kt) {
                bool any = false, all = true, agree = true;
                for (int64_t i = q0; i < q0 + rows; ++i) {
                    const flashsci::test::KeyRange keys = flashsci::test::visible_keys(shape, mask, features, i);
                    for (int64_t j = kt * block_n; j < (kt + 1) * block_n; ++j) {
                        const bool visible = j < len_k && j >= keys.first && j <= keys.last;
                        agree &= key_visible(band, i, j, len_k) == visible;
                        agree &= key_visible(clamped, int(i), int(j), int(len_k)) == visible;
                        any |= visible;
                        all &= visible;
                    }
                }
                INFO("q0 " << q0 << " key tile " << kt);
                CHECK(agree);  // the kernel's per-element mask
                CHECK((kt >= range.first && kt < range.end) == any);  // visited exactly where some row sees a key
                CHECK((kt >= clear.first && kt < clear.end) == all);  // unmasked exactly where every row sees every key
                CHECK((kt >= clear32.first && kt < clear32.end) == all);
            }
        }
    }
}

TEST_CASE("sm80 tiles: every bucket and family has a tile that fits, buckets hold every head_dim", "[sm80]") {
    for (const int d : kHeadDimBuckets)
        for (const Family f : {Family::small, Family::medium, Family::large})
            for (const int bytes : {2, 4}) {
                const TileConfig t = tile_config(d, f, bytes);
                CHECK(t.block_m > 0);
                CHECK(smem_bytes(d, t.block_m, t.block_n, bytes) <= family_smem(f));
            }
    for (int64_t d = kHeadDimStep; d <= kMaxHeadDim; d += kHeadDimStep) {
        const int b = head_dim_bucket(d);
        CHECK(b >= d);
        for (const int smaller : kHeadDimBuckets)
            if (smaller < b) CHECK(smaller < d);
    }
    CHECK(head_dim_bucket(kMaxHeadDim + kHeadDimStep) == 0);
}
