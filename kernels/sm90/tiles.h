// Tile table of the sm_90a forward: one row per head_dim, checked against the H100's limits.
#pragma once

#include <iterator>

namespace flashsci::kernels::sm90 {

// Shared tiles are 64-element (128-byte) column slabs, the span of TMA's 128-byte swizzle.
constexpr int kSlabElems = 64;
constexpr int kSlabRowBytes = 128;
constexpr int kMmaM = 64;  // rows of one warpgroup's wgmma

// CTA roles: warpgroup 0 loads (TMA), warpgroups 1 .. consumers compute 64 query rows each (the table below).
constexpr int kMaxConsumers = 3;
constexpr int kWarpgroupThreads = 128;
constexpr int kRegisterFile = 65536;            // 32-bit registers per SM, all of them the CTA's (one per SM)
constexpr int kSmemLimit = 227 * 1024;         // H100 opt-in shared memory per block
constexpr int kMinProducerRegisters = 24;      // setmaxnreg's floor
constexpr int kAccumulatorBudget = 200;        // S + P + O registers per consumer thread, leaving room for addressing

// The tile table: one row per (head_dim, banded: causal or windowed, wide: a second unbanded or causal tile with more
// work per K/V block, see wide_from_keys). It is also the list of compiled instances: cmake/sm90_instances.cmake
// reads the rows of kTiles below (head_dim, banded, wide, wide_from_keys) and generates one .cu per instance that
// has_instance() names, for bf16 and fp16; adding a head dim is adding its rows.
//
// block_n: keys per tile; stages: K/V ring depth; q_stages: Q buffers (2: the next tile's Q loads during this
// tile; 1: it loads once this tile's last Q·Kᵀ is done); o_over_v: the O staging tile lies over the V ring (freed
// at a tile's end; the next tile's first V then loads only after the O store has read it) instead of in its own
// buffer; consumer_registers: setmaxnreg budget of each consumer thread, the producer gets the rest of the pool;
// qk_desc_from_base: Q·Kᵀ's descriptors are the tile's plus a constant (desc_k_major) rather than rebuilt from each
// slab's address: the same bits, but ptxas schedules the two forms better or worse by tile, so each tile takes the
// one it measured faster with (docs/sm90-kernel.md); consumers: warpgroups of 64 query rows (a tile has
// 64·consumers rows; three leave each 160 registers, too few for the transformed kernels without spilling);
// wide_from_keys: a wide row runs dense, untransformed, non-varlen problems with at least this many keys,
// unbanded ones or (a banded wide row) causal ones without a window; 0: every unbanded untransformed problem,
// varlen too (the wide tile replaces the usual plain one, see wide_replaces_plain).
//
// The wide tiles: hd128's 128×176 takes fewer softmax rounds per key, but its single Q buffer costs more than that
// gains below 8192 keys. hd64's 192×128 on three consumers keeps the tensor pipe fed while two warpgroups do their
// softmax, at every length, so it takes every plain hd64 problem; causal, its 192-row diagonal tiles waste too much
// of short tiles, so its banded row starts at 2048 keys.
struct TileConfig {
    int head_dim;
    bool banded, wide;
    int block_n, stages, q_stages;
    bool o_over_v;
    int consumer_registers;
    bool qk_desc_from_base;
    int consumers;
    int wide_from_keys;
};
constexpr TileConfig kTiles[] = {
    {64, false, false, 192, 2, 2, false, 232, false, 2, 0},
    {64, false, true, 128, 2, 2, false, 160, true, 3, 0},
    {64, true, false, 128, 2, 2, false, 232, false, 2, 0},
    {64, true, true, 128, 2, 2, false, 160, false, 3, 2048},
    {96, false, false, 128, 2, 2, false, 232, true, 2, 0},
    {96, true, false, 128, 2, 2, false, 232, true, 2, 0},
    {128, false, false, 128, 2, 2, false, 232, true, 2, 0},
    {128, false, true, 176, 2, 1, true, 232, false, 2, 8192},
    {128, true, false, 128, 2, 2, false, 232, true, 2, 0},
    {192, false, false, 112, 2, 1, true, 240, true, 2, 0},
    {192, true, false, 112, 2, 1, true, 232, true, 2, 0},
    {256, false, false, 80, 2, 1, true, 240, true, 2, 0},
    {256, true, false, 80, 2, 1, true, 240, true, 2, 0},
};

constexpr TileConfig tile_config(int head_dim, bool banded, bool wide) {
    for (const TileConfig& t : kTiles)
        if (t.head_dim == head_dim && t.banded == banded && t.wide == wide) return t;
    return {};
}

// Whether (head_dim, banded) has a wide tile.
constexpr bool has_wide_tile(int head_dim, bool banded) { return tile_config(head_dim, banded, true).head_dim == head_dim; }

// Whether the wide tile takes every unbanded untransformed problem of head_dim, dense or varlen (wide_from_keys 0):
// the head_dim then has no usual plain instance.
constexpr bool wide_replaces_plain(int head_dim) {
    return has_wide_tile(head_dim, false) && tile_config(head_dim, false, true).wide_from_keys == 0;
}

// Whether the table has a usual (not wide) tile for (head_dim, banded).
constexpr bool has_tile(int head_dim, bool banded) { return tile_config(head_dim, banded, false).head_dim == head_dim; }

// Whether the instance (head_dim, banded, transformed: a softcap or ALiBi, wide) is compiled: every usual tile
// transformed or not, but for the plain unbanded one where the wide tile replaces it; a wide tile untransformed.
// cmake/sm90_instances.cmake applies the same rule to generate the instances' .cu files.
constexpr bool has_instance(int head_dim, bool banded, bool transformed, bool wide) {
    if (wide) return !transformed && has_wide_tile(head_dim, banded);
    return has_tile(head_dim, banded) && (banded || transformed || !wide_replaces_plain(head_dim));
}

// The head dims of the table, in its order.
struct HeadDims {
    int values[std::size(kTiles)];
    int count;
    constexpr bool contains(int head_dim) const {
        for (int i = 0; i < count; ++i)
            if (values[i] == head_dim) return true;
        return false;
    }
};
constexpr HeadDims table_head_dims() {
    HeadDims dims{};
    for (const TileConfig& t : kTiles)
        if (!dims.contains(t.head_dim)) dims.values[dims.count++] = t.head_dim;
    return dims;
}
constexpr HeadDims kHeadDims = table_head_dims();

// Whether the wide tile of (head_dim, banded) runs variable-length batches: only where it replaces the usual plain
// tile; the others run dense problems from wide_from_keys keys (a varlen batch's lengths vary under one maximum).
constexpr bool wide_takes_varlen(int head_dim, bool banded) { return !banded && wide_replaces_plain(head_dim); }

// Query rows per tile of the tile that runs (head_dim, banded, wide): 64 per consumer warpgroup.
constexpr int block_m(int head_dim, bool banded, bool wide) { return tile_config(head_dim, banded, wide).consumers * kMmaM; }

template <int HeadDim, bool Banded, bool Wide = false>
struct TileShape {
    static constexpr TileConfig config = tile_config(HeadDim, Banded, Wide);
    static constexpr int consumers = config.consumers;
    static constexpr int block_m = sm90::block_m(HeadDim, Banded, Wide);
    static constexpr int threads = (1 + consumers) * kWarpgroupThreads;
    static constexpr int register_pool = kRegisterFile / threads * threads;  // 384 threads: 168 each; 512: 128
    static constexpr int block_n = config.block_n;
    static constexpr int stages = config.stages;
    static constexpr int q_stages = config.q_stages;
    static constexpr int consumer_registers = config.consumer_registers;
    static constexpr int producer_registers =
        (register_pool - consumers * kWarpgroupThreads * consumer_registers) / kWarpgroupThreads / 8 * 8;
    static constexpr bool o_over_v = config.o_over_v;
    static constexpr bool qk_desc_from_base = config.qk_desc_from_base;
    static constexpr int kElemBytes = 2;
    // Whole slabs: a head_dim of 96 fills one and a half; TMA zero-fills the rest, no wgmma reads it.
    static constexpr int slabs = (HeadDim + kSlabElems - 1) / kSlabElems;
    static constexpr int q_bytes = kMmaM * slabs * kSlabRowBytes;        // one consumer's Q (or O) tile
    static constexpr int kv_bytes = block_n * slabs * kSlabRowBytes;  // one K or V stage
    static constexpr int q_stage_bytes = consumers * q_bytes;          // every consumer's Q
    static constexpr int k_offset = q_stages * q_stage_bytes;
    static constexpr int v_offset = k_offset + stages * kv_bytes;
    static constexpr int o_offset = o_over_v ? v_offset : v_offset + stages * kv_bytes;
    static constexpr int smem_bytes = v_offset + stages * kv_bytes + (o_over_v ? 0 : consumers * q_bytes);
    static constexpr int smem_alignment = 1024;  // SWIZZLE_128B tiles start on 1 KB
    static constexpr int smem_request = smem_bytes + smem_alignment;

    static_assert(config.head_dim == HeadDim, "no tile for this head_dim");
    static_assert(HeadDim % 32 == 0 && HeadDim <= 256, "head_dim is whole k16 steps of Q·Kᵀ, and one wgmma N");
    static_assert(block_n % 16 == 0 && block_n <= 256, "block_n is whole k16 steps of P·V, one wgmma N of Q·Kᵀ and one TMA box");
    static_assert(stages >= 2, "K/V need double buffering");
    static_assert(q_stages == 1 || q_stages == 2, "one Q buffer, or two");
    static_assert(smem_request <= kSmemLimit, "shared memory over the H100 limit");
    static_assert(consumers >= 2 && consumers <= kMaxConsumers, "ping-pong needs two consumers; named barriers allow three");
    static_assert(!o_over_v || consumers * q_bytes <= stages * kv_bytes, "O does not fit over the V ring");
    static_assert(block_n / 2 + block_n / 4 + HeadDim / 2 <= kAccumulatorBudget, "S + P + O exceed the register budget");
    static_assert(consumer_registers % 8 == 0 && consumer_registers <= 256 && producer_registers >= kMinProducerRegisters,
                  "setmaxnreg takes multiples of 8 in [24, 256]");
};

}  // namespace flashsci::kernels::sm90
