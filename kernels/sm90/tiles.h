// Tile table of the sm_90a forward: one row per head_dim, checked against the H100's limits.
#pragma once

namespace flashsci::kernels::sm90 {

// Shared tiles are 64-element (128-byte) column slabs, the span of TMA's 128-byte swizzle.
constexpr int kSlabElems = 64;
constexpr int kSlabRowBytes = 128;
constexpr int kMmaM = 64;  // rows of one warpgroup's wgmma

// CTA roles: warpgroup 0 loads (TMA), warpgroups 1 and 2 compute 64 query rows each.
constexpr int kConsumers = 2;
constexpr int kWarpgroupThreads = 128;
constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
constexpr int kBlockM = kConsumers * kMmaM;       // query rows per tile
constexpr int kProducerRegisters = 24;         // setmaxnreg budgets: 128·24 + 256·240 ≤ 65536
constexpr int kConsumerRegisters = 240;
constexpr int kSmemLimit = 227 * 1024;         // H100 opt-in shared memory per block
constexpr int kAccumulatorBudget = 200;        // S + P + O registers per consumer thread, leaving room for addressing

// One row per (head_dim, causal). block_n: keys per tile; stages: K/V ring depth; o_aliases_q:
// the O staging tile reuses Q's shared memory (Q is then reloaded only after the O store has read it).
struct TileConfig {
    int head_dim;
    bool causal;
    int block_n, stages;
    bool o_aliases_q;
};
constexpr TileConfig kTiles[] = {
    {64, false, 128, 2, false},
    {64, true, 128, 2, false},
    {128, false, 128, 2, false},
    {128, true, 128, 2, false},
    {256, false, 80, 2, true},
    {256, true, 80, 2, true},
};

constexpr TileConfig tile_config(int head_dim, bool causal) {
    for (const TileConfig& t : kTiles)
        if (t.head_dim == head_dim && t.causal == causal) return t;
    return {};
}

template <int HeadDim, bool Causal>
struct TileShape {
    static constexpr TileConfig config = tile_config(HeadDim, Causal);
    static constexpr int block_n = config.block_n;
    static constexpr int stages = config.stages;
    static constexpr bool o_aliases_q = config.o_aliases_q;
    static constexpr int kElemBytes = 2;
    static constexpr int q_bytes = kMmaM * HeadDim * kElemBytes;        // one consumer's Q (or O) tile
    static constexpr int kv_bytes = block_n * HeadDim * kElemBytes;  // one K or V stage
    static constexpr int o_offset = kConsumers * q_bytes + 2 * stages * kv_bytes;
    static constexpr int smem_bytes = o_offset + (o_aliases_q ? 0 : kConsumers * q_bytes);
    static constexpr int smem_alignment = 1024;  // SWIZZLE_128B tiles start on 1 KB
    static constexpr int smem_request = smem_bytes + smem_alignment;

    static_assert(config.head_dim == HeadDim, "no tile for this head_dim");
    static_assert(HeadDim % 64 == 0 && HeadDim <= 256, "head_dim is whole 128-byte slabs, and one wgmma N");
    static_assert(block_n % 16 == 0 && block_n <= 256, "block_n is whole k16 steps of P·V, one wgmma N of Q·Kᵀ and one TMA box");
    static_assert(stages >= 2, "K/V need double buffering");
    static_assert(smem_request <= kSmemLimit, "shared memory over the H100 limit");
    static_assert(block_n / 2 + block_n / 4 + HeadDim / 2 <= kAccumulatorBudget, "S + P + O exceed the register budget");
    static_assert(kProducerRegisters * kWarpgroupThreads + kConsumers * kConsumerRegisters * kWarpgroupThreads <=
                      65536, "register file");
};

}  // namespace flashsci::kernels::sm90
