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
constexpr int kRegisterPool = 65536 / kThreads * kThreads;  // what a 384-thread CTA is given (168 each)
constexpr int kSmemLimit = 227 * 1024;         // H100 opt-in shared memory per block
constexpr int kMinProducerRegisters = 24;      // setmaxnreg's floor
constexpr int kAccumulatorBudget = 200;        // S + P + O registers per consumer thread, leaving room for addressing

// One row per (head_dim, banded: causal or windowed, wide: the dense plain kernel for long key sequences, see
// kWideTileKeys). block_n: keys per tile; stages: K/V ring depth; q_stages: Q
// buffers (2: the next tile's Q loads during this tile; 1: it loads once this tile's last Q·Kᵀ is done);
// o_over_v: the O staging tile lies over the V ring (freed at a tile's end; the next tile's first V then
// loads only after the O store has read it) instead of in its own buffer; consumer_registers: setmaxnreg
// budget of each consumer thread, the producer gets the rest of the pool; qk_desc_from_base: Q·Kᵀ's descriptors
// are the tile's plus a constant (desc_k_major), which ptxas schedules better or worse by tile (H200, bf16: +1-8 %
// for hd128 and hd256, 3-7 % slower for hd64, 4.5 % slower for the wide hd128 tile; hd96 untried).
struct TileConfig {
    int head_dim;
    bool banded, wide;
    int block_n, stages, q_stages;
    bool o_over_v;
    int consumer_registers;
    bool qk_desc_from_base;
};
constexpr TileConfig kTiles[] = {
    {64, false, false, 192, 2, 2, false, 232, false},
    {64, true, false, 128, 2, 2, false, 232, false},
    {96, false, false, 128, 2, 2, false, 232, false},
    {96, true, false, 128, 2, 2, false, 232, false},
    {128, false, false, 128, 2, 2, false, 232, true},
    {128, false, true, 176, 2, 1, true, 232, false},
    {128, true, false, 128, 2, 2, false, 232, true},
    {192, false, false, 112, 2, 1, true, 240, true},
    {192, true, false, 112, 2, 1, true, 240, true},
    {256, false, false, 80, 2, 1, true, 240, true},
    {256, true, false, 80, 2, 1, true, 240, true},
};

// The wide tile runs dense, unbanded, untransformed problems of this head_dim from this many keys: on an H200 its
// fewer softmax rounds gave +2 % at 8k and +3.7 % at 16k keys (GQA 32/8: +3-4 %), but its single Q buffer cost
// 2 % at 4k and 4-8 % at 512-1k.
constexpr int kWideHeadDim = 128;
constexpr int kWideTileKeys = 8192;

constexpr TileConfig tile_config(int head_dim, bool banded, bool wide) {
    for (const TileConfig& t : kTiles)
        if (t.head_dim == head_dim && t.banded == banded && t.wide == wide) return t;
    return {};
}

template <int HeadDim, bool Banded, bool Wide = false>
struct TileShape {
    static constexpr TileConfig config = tile_config(HeadDim, Banded, Wide);
    static constexpr int block_n = config.block_n;
    static constexpr int stages = config.stages;
    static constexpr int q_stages = config.q_stages;
    static constexpr int consumer_registers = config.consumer_registers;
    static constexpr int producer_registers =
        (kRegisterPool - kConsumers * kWarpgroupThreads * consumer_registers) / kWarpgroupThreads / 8 * 8;
    static constexpr bool o_over_v = config.o_over_v;
    static constexpr bool qk_desc_from_base = config.qk_desc_from_base;
    static constexpr int kElemBytes = 2;
    // Whole slabs: a head_dim of 96 fills one and a half; TMA zero-fills the rest, no wgmma reads it.
    static constexpr int slabs = (HeadDim + kSlabElems - 1) / kSlabElems;
    static constexpr int q_bytes = kMmaM * slabs * kSlabRowBytes;        // one consumer's Q (or O) tile
    static constexpr int kv_bytes = block_n * slabs * kSlabRowBytes;  // one K or V stage
    static constexpr int q_stage_bytes = kConsumers * q_bytes;         // both consumers' Q
    static constexpr int k_offset = q_stages * q_stage_bytes;
    static constexpr int v_offset = k_offset + stages * kv_bytes;
    static constexpr int o_offset = o_over_v ? v_offset : v_offset + stages * kv_bytes;
    static constexpr int smem_bytes = v_offset + stages * kv_bytes + (o_over_v ? 0 : kConsumers * q_bytes);
    static constexpr int smem_alignment = 1024;  // SWIZZLE_128B tiles start on 1 KB
    static constexpr int smem_request = smem_bytes + smem_alignment;

    static_assert(config.head_dim == HeadDim, "no tile for this head_dim");
    static_assert(HeadDim % 32 == 0 && HeadDim <= 256, "head_dim is whole k16 steps of Q·Kᵀ, and one wgmma N");
    static_assert(block_n % 16 == 0 && block_n <= 256, "block_n is whole k16 steps of P·V, one wgmma N of Q·Kᵀ and one TMA box");
    static_assert(stages >= 2, "K/V need double buffering");
    static_assert(q_stages == 1 || q_stages == 2, "one Q buffer, or two");
    static_assert(smem_request <= kSmemLimit, "shared memory over the H100 limit");
    static_assert(!o_over_v || kConsumers * q_bytes <= stages * kv_bytes, "O does not fit over the V ring");
    static_assert(block_n / 2 + block_n / 4 + HeadDim / 2 <= kAccumulatorBudget, "S + P + O exceed the register budget");
    static_assert(consumer_registers % 8 == 0 && consumer_registers <= 256 && producer_registers >= kMinProducerRegisters,
                  "setmaxnreg takes multiples of 8 in [24, 256]");
};

}  // namespace flashsci::kernels::sm90
