// The CPU backend's driver: picks the path, cuts the problem into work items of (sequence, query head, block
// of query rows), orders them longest first (causal and windowed blocks see fewer keys, variable-length
// sequences differ), and runs them on thread_count() threads, each with its own scratch.
#include "cpu/cpu_attention.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/cpu_threads.h"
#include "cpu/fast_block.h"

namespace flashsci::cpu {
namespace {

using kernels::Element;
using kernels::Problem;

// Query rows whose scores are held at once: 24 rows × tile_keys of fp32 (24 KiB at 256 keys) stay in L1.
constexpr int64_t kGroupRows = 24;
// At most this many groups per work item: a K/V tile is converted once for up to 2064 rows (a whole head at
// seqlen 2048 when threads have work enough without splitting it).
constexpr int64_t kMaxGroupsPerBlock = 86;
// Fewer groups per item while the items would not give every thread this many to balance with (also when
// other processes slow one thread down)...
constexpr int64_t kItemsPerThread = 8;
// ...but not below this many rows: every item converts the K/V tiles it reads, which costs about as much as the
// products of some 100 query rows against them.
constexpr int64_t kMinBlockRows = 144;
// A K tile and a V tile of fp32 together: they stay in L2 while every group of the block reads them.
constexpr int64_t kKeyValueTileBytes = 256 * 1024;
constexpr int64_t kMaxTileKeys = 512;
// Scratch buffers start on cache lines.
constexpr int64_t kAlignFloats = 64 / sizeof(float);

static_assert(kGroupRows % kAvx2Tile.rows == 0 && kGroupRows % kAvx512Tile.rows == 0 &&
                  kGroupRows % kPortableTile.rows == 0,
              "a group is whole register tiles of rows");

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

FastBlockFunction block_function(Isa isa) {
#if defined(FLASHSCI_CPU_X86)
    if (isa == Isa::avx512) return fast_block_avx512;
    if (isa == Isa::avx2) return fast_block_avx2;
#else
    (void)isa;
#endif
    return fast_block_portable;
}

// The blocking of p for `threads` threads on `tile`'s register tiles.
FastProblem blocking(const Problem& p, const MicroTile& tile, int64_t threads) {
    FastProblem f{};
    f.element = p.element;
    f.head_dim = p.head_dim;
    f.padded_dims = round_up(p.head_dim, tile.width);
    f.group_rows = kGroupRows;
    f.micro_width = tile.width;
    const int64_t heads = p.batch * p.heads_q;
    int64_t groups = kMaxGroupsPerBlock;
    while (groups * kGroupRows > kMinBlockRows &&
           heads * ceil_div(p.seqlen_q, groups * kGroupRows) < kItemsPerThread * threads)
        --groups;
    const int64_t blocks = ceil_div(p.seqlen_q, groups * kGroupRows);  // per head, balanced in size
    f.block_rows = round_up(ceil_div(p.seqlen_q, blocks), tile.rows);
    const int64_t fitting = kKeyValueTileBytes / (2 * int64_t(sizeof(float)) * f.padded_dims);
    f.tile_keys = std::max<int64_t>(tile.width, std::min(kMaxTileKeys, fitting) / tile.width * tile.width);
    f.scale = p.scale;
    f.softcap = p.softcap;
    return f;
}

struct Item {
    int64_t batch, head, first_row, rows;
    int64_t cost;  // ~ query-key pairs
};

// Keys row i of a sequence sees.
int64_t visible_keys(const kernels::KeyBand& band, int64_t len_k, int64_t i) {
    return std::max<int64_t>(0, std::min(len_k - 1, i + band.last) - std::max<int64_t>(0, i + band.first) + 1);
}

std::vector<Item> work_items(const Problem& p, int64_t block_rows) {
    std::vector<Item> items;
    for (int64_t b = 0; b < p.batch; ++b) {
        const kernels::Sequence seq = kernels::sequence(p, b);
        const kernels::KeyBand band = kernels::key_band(p, seq.len_q, seq.len_k);
        for (int64_t h = 0; h < p.heads_q; ++h)
            for (int64_t first = 0; first < seq.len_q; first += block_rows) {
                const int64_t rows = std::min(block_rows, seq.len_q - first);
                const int64_t keys = visible_keys(band, seq.len_k, first) + visible_keys(band, seq.len_k, first + rows - 1);
                items.push_back({b, h, first, rows, rows * (keys / 2 + 1)});
            }
    }
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
    return items;
}

int64_t offset(const kernels::Strides& s, int64_t batch, int64_t row, int64_t head) {
    return batch * s.batch + row * s.seq + head * s.head;
}

FastBlock block_of(const Problem& p, const Item& item) {
    const kernels::Sequence seq = kernels::sequence(p, item.batch);
    const kernels::KeyBand band = kernels::key_band(p, seq.len_q, seq.len_k);
    const int64_t kv_head = item.head / (p.heads_q / p.heads_kv);
    const int64_t bytes = kernels::element_bytes(p.element);
    const int64_t row = seq.q_start + item.first_row;
    FastBlock b{};
    b.q = static_cast<const char*>(p.q) + bytes * offset(p.q_strides, item.batch, row, item.head);
    b.o = static_cast<char*>(p.o) + bytes * offset(p.o_strides, item.batch, row, item.head);
    b.k = static_cast<const char*>(p.k) + bytes * offset(p.k_strides, item.batch, seq.k_start, kv_head);
    b.v = static_cast<const char*>(p.v) + bytes * offset(p.v_strides, item.batch, seq.k_start, kv_head);
    b.q_row_stride = p.q_strides.seq, b.o_row_stride = p.o_strides.seq;
    b.k_row_stride = p.k_strides.seq, b.v_row_stride = p.v_strides.seq;
    b.lse = p.lse ? p.lse + kernels::lse_index(p, seq, item.batch, item.head, item.first_row) : nullptr;
    b.first_row = item.first_row, b.rows = item.rows, b.len_k = seq.len_k;
    b.band_first = band.first, b.band_last = band.last;
    b.alibi_slope = p.alibi_slopes ? p.alibi_slopes[item.head] : 0.0f;
    b.alibi_offset = kernels::alibi_offset(seq.len_q, seq.len_k);
    return b;
}

// One thread's buffers (fast_block.h), on cache-line boundaries.
class Scratch {
public:
    explicit Scratch(const FastProblem& f) {
        const int64_t rows = f.block_rows, ld = f.padded_dims, keys = f.tile_keys;
        const int64_t float_counts[] = {rows * ld, rows * ld, rows, rows, keys * f.head_dim, keys * ld,
                                        keys, f.group_rows * keys, f.group_rows, f.micro_width * ld};
        const int64_t double_counts[] = {rows, keys};
        int64_t floats = 0, doubles = 0;
        for (int64_t n : float_counts) floats += round_up(n, kAlignFloats);
        for (int64_t n : double_counts) doubles += round_up(n, kAlignFloats);
        floats_.resize(size_t(floats + kAlignFloats));
        doubles_.resize(size_t(doubles + kAlignFloats));
        float* next_float = align(floats_.data());
        double* next_double = align(doubles_.data());
        auto take_float = [&](int64_t n) { float* p = next_float; next_float += round_up(n, kAlignFloats); return p; };
        auto take_double = [&](int64_t n) { double* p = next_double; next_double += round_up(n, kAlignFloats); return p; };
        buffers_.queries = take_float(float_counts[0]);
        buffers_.out = take_float(float_counts[1]);
        buffers_.row_sum = take_float(float_counts[2]);
        buffers_.query_norm2 = take_float(float_counts[3]);
        buffers_.keys = take_float(float_counts[4]);
        buffers_.values = take_float(float_counts[5]);
        buffers_.key_norm2 = take_float(float_counts[6]);
        buffers_.scores = take_float(float_counts[7]);
        buffers_.correction = take_float(float_counts[8]);
        buffers_.key_rows = take_float(float_counts[9]);
        buffers_.row_max = take_double(double_counts[0]);
        buffers_.precise = take_double(double_counts[1]);
    }
    const FastScratch& buffers() const { return buffers_; }

private:
    template <class T>
    static T* align(T* p) {
        const auto address = reinterpret_cast<uintptr_t>(p);
        const uintptr_t line = kAlignFloats * sizeof(float);
        return reinterpret_cast<T*>((address + line - 1) / line * line);
    }
    std::vector<float> floats_;
    std::vector<double> doubles_;
    FastScratch buffers_{};
};

void forward_fast(const Problem& p, Isa isa) {
    const int64_t threads = thread_count();
    const FastProblem f = blocking(p, micro_tile(isa), threads);
    const std::vector<Item> items = work_items(p, f.block_rows);
    const FastBlockFunction run_block = block_function(isa);
    run_parallel(int64_t(items.size()), threads, [&](const auto& next) {
        const Scratch scratch(f);
        for (int64_t item; next(item);) run_block(f, block_of(p, items[size_t(item)]), scratch.buffers());
    });
}

}  // namespace

void forward(const Problem& p, Isa isa) {
    if (isa == Isa::reference) return forward_reference(p);
    forward_fast(p, isa);
}

void forward(const Problem& p) {
    Isa isa;
    const char* unusable = nullptr;
    if (!chosen_isa(&isa, &unusable)) isa = best_isa();
    forward(p, isa);
}

}  // namespace flashsci::cpu
