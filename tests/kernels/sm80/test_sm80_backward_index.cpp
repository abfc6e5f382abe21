// The sm_80 backward's index math on the CPU (kernels/sm80/bwd_index.h, bwd_tiles.h): the swizzle of its tiles (64-byte
// rows included), and, for every GEMM of every tile-table row, a simulation of the ldmatrix loads the kernel issues
// (per-lane pair addresses plus block offsets, plain and transposed, x4 and x2) checked element by element against
// the m16n8k16 fragments they must produce; the warp grids' coverage of each output; the mask test against a brute
// force of the visible keys; the step walk.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "mask_trials.h"
#include "reference.h"
#include "sm80/bwd_index.h"
#include "sm80/bwd_tiles.h"

using namespace flashsci::kernels;
using namespace flashsci::kernels::sm80;

namespace {

constexpr int kLanes = 32;
constexpr int kBankGroups = 8;  // 16-byte groups of the 32 four-byte banks
constexpr int kCode = 1024;     // a stored element's code: row·kCode + column

// A swizzled [rows][chunks] tile of 16-bit elements whose stored element (r, c) holds the code r·kCode + c.
struct StoredTile {
    int rows, chunks;
    std::vector<int> memory;
    StoredTile(int rows_, int chunks_)
        : rows(rows_), chunks(chunks_), memory(size_t(rows_ * chunks_ * kChunkElems), -1) {
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < chunks * kChunkElems; ++c)
                memory[size_t(tile_element_offset(chunks, r, c))] = r * kCode + c;
    }
    int at(int offset) const { return offset >= 0 && offset < int(memory.size()) ? memory[size_t(offset)] : -1; }
};

// Failed element checks: their count and the first one's description.
struct Failures {
    int count = 0;
    std::string first;
    template <typename Describe>
    void expect(bool good, Describe describe) {
        if (good) return;
        if (count++ == 0) first = describe();
    }
};

// What ldmatrix gives lane l in register i, as the codes of its low and high halves: lanes 8i..8i+7 name the rows
// of matrix i; plain, lane l gets row l/4's elements 2(l%4), 2(l%4)+1; transposed, (row 2(l%4), column l/4) and
// (row 2(l%4)+1, column l/4).
std::pair<int, int> ldmatrix(const StoredTile& t, const std::vector<int>& address, int lane, int i, bool transposed) {
    const auto element = [&](int matrix_row, int col) { return t.at(address[size_t(8 * i + matrix_row)] + col); };
    const int l4 = lane / 4, c = lane % 4;
    if (!transposed) return {element(l4, 2 * c), element(l4, 2 * c + 1)};
    return {element(2 * c, l4), element(2 * c + 1, l4)};
}

// One GEMM as the kernel's warp_gemm issues it for one warp.
struct GemmCase {
    const char* name;
    int a_rows, a_chunks;  // the stored A tile
    bool a_trans;          // A stored [k][row] (ldmatrix.trans, pair-major lanes), else [row][k] (row-major lanes)
    int b_rows, b_chunks;
    bool b_trans;  // B stored [k][n] (ldmatrix.trans, row-major lanes), else [n][k] (pair-major lanes)
    int m_tiles, n_tiles, k_steps;
    int row0, col0;  // the warp's output origin
};

// The operand's logical coordinates {row or k, k or n} of a stored code.
RowCol a_logical(const GemmCase& g, int code) {
    const int r = code / kCode, c = code % kCode;
    return g.a_trans ? RowCol{c, r} : RowCol{r, c};  // {row, k}
}
RowCol b_logical(const GemmCase& g, int code) {
    const int r = code / kCode, c = code % kCode;
    return g.b_trans ? RowCol{r, c} : RowCol{c, r};  // {k, n}
}

// Every fragment the warp loads holds exactly the elements m16n8k16 expects there (index.h: a_pair, b_pair).
void check_gemm(const GemmCase& g) {
    INFO(g.name << ": A " << g.a_rows << "x" << g.a_chunks << (g.a_trans ? " trans" : "") << ", B " << g.b_rows << "x"
                << g.b_chunks << (g.b_trans ? " trans" : "") << ", tiles " << g.m_tiles << "x" << g.n_tiles
                << ", k steps " << g.k_steps << ", origin " << g.row0 << "," << g.col0);
    const StoredTile a_tile(g.a_rows, g.a_chunks), b_tile(g.b_rows, g.b_chunks);
    // the lanes' pair offsets, as lane_addresses() builds them
    const auto a_origin = g.a_trans ? RowCol{0, g.row0 / kChunkElems} : RowCol{g.row0, 0};
    const auto b_origin = g.b_trans ? RowCol{0, g.col0 / kChunkElems} : RowCol{g.col0, 0};
    const auto a_pattern = [&](int lane) { return g.a_trans ? pair_major_address(lane) : row_major_address(lane); };
    const auto b_pattern = [&](int lane) { return g.b_trans ? row_major_address(lane) : pair_major_address(lane); };
    // block_address(): pair lane_pair(C) plus block_offset(R, C)
    const auto addresses = [&](bool is_a, int row, int chunk) {
        std::vector<int> out(kLanes);
        for (int lane = 0; lane < kLanes; ++lane) {
            const int chunks = is_a ? g.a_chunks : g.b_chunks;
            const RowCol origin = is_a ? a_origin : b_origin;
            out[size_t(lane)] = lane_pair_offset(chunks, is_a ? a_pattern(lane) : b_pattern(lane), origin.row,
                                                 origin.col, lane_pair(chunks, chunk)) +
                                block_offset(chunks, row, chunk);
        }
        return out;
    };
    Failures bad;
    const auto where = [](const char* operand, int ks, int tile, int lane, int i) {
        return [=] {
            std::ostringstream out;
            out << operand << " k step " << ks << " tile " << tile << " lane " << lane << " register " << i;
            return out.str();
        };
    };
    for (int ks = 0; ks < g.k_steps; ++ks) {
        for (int mt = 0; mt < g.m_tiles; ++mt) {
            const std::vector<int> address =
                g.a_trans ? addresses(true, ks * kMmaK, 2 * mt) : addresses(true, mt * kMmaM, 2 * ks);
            for (int lane = 0; lane < kLanes; ++lane)
                for (int i = 0; i < 4; ++i) {
                    const auto [lo, hi] = ldmatrix(a_tile, address, lane, i, g.a_trans);
                    const RowCol want = a_pair(lane, i);
                    bad.expect(lo >= 0 && hi >= 0 && a_logical(g, lo).row == g.row0 + mt * kMmaM + want.row &&
                                   a_logical(g, lo).col == ks * kMmaK + want.col &&
                                   a_logical(g, hi).row == g.row0 + mt * kMmaM + want.row &&
                                   a_logical(g, hi).col == ks * kMmaK + want.col + 1,
                               where("A", ks, mt, lane, i));
                }
        }
        for (int np = 0; np < g.n_tiles / 2; ++np) {
            const std::vector<int> address =
                g.b_trans ? addresses(false, ks * kMmaK, 2 * np) : addresses(false, np * 2 * kMmaN, 2 * ks);
            for (int lane = 0; lane < kLanes; ++lane)
                for (int i = 0; i < 4; ++i) {
                    const auto [lo, hi] = ldmatrix(b_tile, address, lane, i, g.b_trans);
                    const RowCol want = b_pair(lane, i % 2);  // {k, n} within n block i / 2
                    const int n = g.col0 + np * 2 * kMmaN + (i / 2) * kMmaN + want.col;
                    bad.expect(lo >= 0 && hi >= 0 && b_logical(g, lo).row == ks * kMmaK + want.row &&
                                   b_logical(g, lo).col == n && b_logical(g, hi).row == ks * kMmaK + want.row + 1 &&
                                   b_logical(g, hi).col == n,
                               where("B", ks, np, lane, i));
                }
        }
        if (g.n_tiles % 2 == 1) {  // ldmatrix.x2: matrices 0 and 1 from lanes 0-15
            REQUIRE(!g.b_trans);
            const std::vector<int> address = addresses(false, (g.n_tiles - 1) * kMmaN, 2 * ks);
            for (int lane = 0; lane < kLanes; ++lane)
                for (int i = 0; i < 2; ++i) {
                    const auto [lo, hi] = ldmatrix(b_tile, address, lane, i, false);
                    const RowCol want = b_pair(lane, i);
                    const int n = g.col0 + (g.n_tiles - 1) * kMmaN + want.col;
                    bad.expect(lo >= 0 && hi >= 0 && b_logical(g, lo).row == ks * kMmaK + want.row &&
                                   b_logical(g, lo).col == n && b_logical(g, hi).row == ks * kMmaK + want.row + 1 &&
                                   b_logical(g, hi).col == n,
                               where("B x2", ks, g.n_tiles - 1, lane, i));
                }
        }
    }
    INFO(bad.count << " wrong fragments; first: " << bad.first);
    CHECK(bad.count == 0);
}

// WarpGrid at run time (the same formulas; checked against the template below).
struct Grid {
    int rows, cols, warps_m;
    int warps_n() const { return kBackwardWarps / warps_m; }
    int warp_rows() const { return rows / warps_m; }
    int warp_cols() const { return cols / warps_n(); }
    int m_tiles() const { return warp_rows() / kMmaM; }
    int n_tiles() const { return warp_cols() / kMmaN; }
    int row0(int warp) const { return warp % warps_m * warp_rows(); }
    int col0(int warp) const { return warp / warps_m * warp_cols(); }
};

// Each output element of the grid is one (warp, lane, tile, element) of the C fragments.
void check_coverage(const Grid& grid) {
    INFO("grid " << grid.rows << "x" << grid.cols << " warps_m " << grid.warps_m);
    REQUIRE(grid.rows % (grid.warps_m * kMmaM) == 0);
    REQUIRE(grid.cols % (grid.warps_n() * kMmaN) == 0);
    std::vector<int> hits(size_t(grid.rows * grid.cols), 0);
    for (int warp = 0; warp < kBackwardWarps; ++warp)
        for (int lane = 0; lane < kLanes; ++lane)
            for (int mt = 0; mt < grid.m_tiles(); ++mt)
                for (int nt = 0; nt < grid.n_tiles(); ++nt)
                    for (int e = 0; e < 4; ++e) {
                        const RowCol c = c_element(lane, e);
                        ++hits[size_t((grid.row0(warp) + mt * kMmaM + c.row) * grid.cols + grid.col0(warp) +
                                      nt * kMmaN + c.col)];
                    }
    int wrong = 0;
    for (const int h : hits) wrong += h != 1;
    CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("sm80 backward index: the swizzle is a bijection and conflict-free for ldmatrix, 64-byte rows too",
          "[sm80][backward]") {
    for (const int chunks : {kNarrowChunks, 8, 16, 32})
        for (const int rows : {16, 32, 64, 128}) {
            INFO("chunks " << chunks << " rows " << rows);
            std::set<int> seen;
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < chunks; ++c) {
                    const int offset = tile_chunk_offset(chunks, r, c);
                    CHECK(offset % kChunkElems == 0);
                    CHECK(offset >= r * chunks * kChunkElems);
                    CHECK(offset < (r + 1) * chunks * kChunkElems);
                    seen.insert(offset);
                    if (chunks >= kSwizzleRows) CHECK(offset == swizzled_offset(chunks, r, c));  // the forward's
                }
            CHECK(int(seen.size()) == rows * chunks);
            for (int r0 = 0; r0 < rows; r0 += kSwizzleRows)
                for (int c = 0; c < chunks; ++c) {
                    std::set<int> groups;
                    for (int r = r0; r < r0 + kSwizzleRows; ++r)
                        groups.insert(tile_chunk_offset(chunks, r, c) / kChunkElems % kBankGroups);
                    CHECK(groups.size() == size_t(kSwizzleRows));
                }
        }
}

TEST_CASE("sm80 backward index: lane pair addresses plus block offsets name the swizzled blocks", "[sm80][backward]") {
    Failures bad;
    for (const int chunks : {kNarrowChunks, 8, 16, 32})
        for (int lane = 0; lane < kLanes; ++lane)
            for (const RowCol at : {row_major_address(lane), pair_major_address(lane)})
                for (int row0 = 0; row0 < 64; row0 += kMmaM)
                    for (int chunk0 = 0; chunk0 < chunks; chunk0 += 2)
                        for (int row = 0; row0 + row < 128; row += kSwizzleRows)
                            for (int chunk = 0; chunk0 + chunk + 1 < chunks; chunk += 2) {
                                const int got = lane_pair_offset(chunks, at, row0, chunk0, lane_pair(chunks, chunk)) +
                                                block_offset(chunks, row, chunk);
                                bad.expect(
                                    lane_pair(chunks, chunk) < lane_pairs(chunks) &&
                                        got == tile_chunk_offset(chunks, row0 + row + at.row, chunk0 + chunk + at.col),
                                    [&] {
                                        std::ostringstream out;
                                        out << "chunks " << chunks << " lane " << lane << " origin " << row0 << ","
                                            << chunk0 << " block " << row << "," << chunk;
                                        return out.str();
                                    });
                            }
    INFO(bad.count << " wrong addresses; first: " << bad.first);
    CHECK(bad.count == 0);
}

TEST_CASE("sm80 backward index: every GEMM of every tile loads the m16n8k16 fragments", "[sm80][backward]") {
    for (const BackwardTileConfig& t : kBackwardTiles) {
        INFO("head_dim " << t.head_dim << " family " << int(t.family) << " tile " << t.block_m << "x" << t.block_n);
        const int chunks = t.head_dim / kChunkElems, p_chunks = t.block_n / kChunkElems;
        const int dq_passes = backward_dq_passes(t.head_dim, t.block_m), dq_cols = t.head_dim / dq_passes;
        const Grid sdp{t.block_m, t.block_n, t.sdp_warps_m}, dkv{t.block_n, t.head_dim, t.dkv_warps_n},
            dq{t.block_m, dq_cols, t.dq_warps_m};
        CHECK(dq_passes * dq_cols == t.head_dim);
        CHECK(dq.m_tiles() * dq.n_tiles() * 4 <= kMaxDqRegisters);
        check_coverage(sdp), check_coverage(dkv), check_coverage(dq);
        for (int warp = 0; warp < kBackwardWarps; ++warp) {
            // S = Q·Kᵀ (dP = dO·Vᵀ loads the same way)
            check_gemm({"S", t.block_m, chunks, false, t.block_n, chunks, false, sdp.m_tiles(), sdp.n_tiles(),
                        t.head_dim / kMmaK, sdp.row0(warp), sdp.col0(warp)});
            // dV += Pᵀ·dO (dK += dSᵀ·Q loads the same way)
            check_gemm({"dV", t.block_m, p_chunks, true, t.block_m, chunks, true, dkv.m_tiles(), dkv.n_tiles(),
                        t.block_m / kMmaK, dkv.row0(warp), dkv.col0(warp)});
            // dQ = dS·K, each column pass
            for (int pass = 0; pass < dq_passes; ++pass)
                check_gemm({"dQ", t.block_m, p_chunks, false, t.block_n, chunks, true, dq.m_tiles(), dq.n_tiles(),
                            t.block_n / kMmaK, dq.row0(warp), pass * dq_cols + dq.col0(warp)});
        }
    }
}

TEST_CASE("sm80 backward index: WarpGrid and the shapes of the table", "[sm80][backward]") {
    using G = WarpGrid<64, 128, 4>;
    const Grid grid{64, 128, 4};
    for (int warp = 0; warp < kBackwardWarps; ++warp) {
        CHECK(G::row0(warp) == grid.row0(warp));
        CHECK(G::col0(warp) == grid.col0(warp));
    }
    CHECK(G::m_tiles == grid.m_tiles());
    CHECK(G::n_tiles == grid.n_tiles());
    for (const int d : kHeadDimBuckets)
        for (const Family f : {Family::small, Family::medium, Family::large}) {
            const BackwardTileConfig t = backward_tile_config(d, f);
            CHECK(t.block_m > 0);
            CHECK(backward_smem_bytes(d, t.block_m, t.block_n, t.double_buffer) <= family_smem(f));
            CHECK(backward_min_block_n(d) <= t.block_n);
        }
}

TEST_CASE("sm80 backward index: tiles needing the mask against a brute force of the visible keys", "[sm80][backward]") {
    std::mt19937_64 rng(20261208);
    std::uniform_int_distribution<int64_t> coin(0, 3);
    for (int trial = 0; trial < 1500; ++trial) {
        const flashsci::test::MaskTrial t = flashsci::test::random_mask_trial(rng, coin, trial);
        const flashsci_mask_t mask = t.mask;
        const int64_t len_q = t.len_q, len_k = t.len_k, left = t.left, right = t.right;
        const int block_m = coin(rng) < 2 ? 32 : 64, block_n = coin(rng) < 2 ? 32 : 128;
        const KeyBand band = key_band(t.problem(), len_q, len_k);
        const flashsci::test::Shape shape = t.shape();
        const flashsci::test::Features features = t.features();
        INFO("mask " << int(mask) << " len_q " << len_q << " len_k " << len_k << " window " << left << " " << right
                     << " tile " << block_m << "x" << block_n);
        for (int64_t k0 = 0; k0 < len_k; k0 += block_n) {
            const general::BlockRange blocks = general::query_blocks(band, k0, block_n, len_q, len_k, block_m);
            for (int64_t q0 = 0; q0 < len_q; q0 += block_m) {
                bool any = false, cut = k0 + block_n > len_k;
                for (int64_t i = q0; i < std::min(q0 + block_m, len_q); ++i) {
                    const flashsci::test::KeyRange keys = flashsci::test::visible_keys(shape, mask, features, i);
                    for (int64_t j = k0; j < std::min(k0 + block_n, len_k); ++j) {
                        const bool visible = j >= keys.first && j <= keys.last;
                        any |= visible;
                        cut |= !visible;
                    }
                }
                INFO("q0 " << q0 << " k0 " << k0);
                CHECK(tile_needs_mask(band, q0, block_m, k0, block_n, len_q, len_k) == cut);
                const int64_t m = q0 / block_m;
                CHECK((m >= blocks.first && m < blocks.end) == any);  // the walk visits exactly these blocks
            }
        }
    }
}

TEST_CASE("sm80 backward index: the step walk visits every (head, query block) of the group once", "[sm80][backward]") {
    for (const int64_t group : {1, 3, 8})
        for (const int64_t blocks : {1, 2, 7}) {
            std::set<std::pair<int64_t, int64_t>> seen;
            BackwardStep walked = backward_step(0, 10 * group, 5, blocks);
            for (int64_t t = 0; t < group * blocks; ++t) {
                const BackwardStep s = backward_step(t, 10 * group, 5, blocks);
                INFO("group " << group << " blocks " << blocks << " step " << t);
                CHECK(walked.head == s.head);  // next_step() walks the same order without dividing
                CHECK(walked.q_block == s.q_block);
                walked = next_step(walked, 5, blocks);
                CHECK(s.head >= 10 * group);
                CHECK(s.head < 11 * group);
                CHECK(s.q_block >= 5);
                CHECK(s.q_block < 5 + blocks);
                seen.insert({s.head, s.q_block});
            }
            CHECK(int64_t(seen.size()) == group * blocks);
        }
}
