// Hopper synchronisation and copy helpers: mbarriers, TMA, named barriers, register budgets.
// Everything here is sm_90a device code; callers guard it with __CUDA_ARCH_FEAT_SM90_ALL.
#pragma once

#include <cstdint>

#include <cuda.h>
#include <cuda/ptx>

namespace flashsci::kernels::sm90 {

namespace ptx = cuda::ptx;

// ---- mbarriers: a phase completes when `count` arrivals and every expected TMA byte have landed.
__device__ __forceinline__ void barrier_init(uint64_t* bar, uint32_t count) { ptx::mbarrier_init(bar, count); }

// Makes the initialised barriers visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void barrier_init_fence() { ptx::fence_mbarrier_init(ptx::sem_release, ptx::scope_cluster); }

__device__ __forceinline__ void barrier_wait(uint64_t* bar, uint32_t parity) {
    while (!ptx::mbarrier_try_wait_parity(bar, parity)) {
    }
}

__device__ __forceinline__ void barrier_arrive(uint64_t* bar) { ptx::mbarrier_arrive(bar); }
__device__ __forceinline__ void barrier_arrive(uint64_t* bar, uint32_t count) { ptx::mbarrier_arrive(bar, count); }

__device__ __forceinline__ void barrier_expect_bytes(uint64_t* bar, uint32_t bytes) {
    ptx::mbarrier_arrive_expect_tx(ptx::sem_release, ptx::scope_cta, ptx::space_shared, bar, bytes);
}

// A ring of `Stages` buffers: position `count` lives in stage count % Stages, and the
// barrier guarding it completes its (count / Stages)-th phase.
template <int Stages>
struct Ring {
    static __device__ __forceinline__ int stage(uint32_t count) { return count % Stages; }
    static __device__ __forceinline__ uint32_t parity(uint32_t count) { return (count / Stages) & 1; }
    // Free slots start out released: the producer's first wait per stage passes at once.
    static __device__ __forceinline__ uint32_t empty_parity(uint32_t count) { return parity(count) ^ 1; }
};

// ---- TMA on a 4-D map {head_dim, seqlen, heads, batch}; coordinates are innermost first.
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, int d, int row, int head, int batch,
                                         uint64_t* bar) {
    const int32_t coords[4] = {d, row, head, batch};
    ptx::cp_async_bulk_tensor(ptx::space_cluster, ptx::space_global, dst, map, coords, bar);
}

// Q and O: 5-D maps {head_dim, pack, seqlen, heads / pack, batch} whose box spans a whole pack of heads
// (the heads of one GQA group, or one head), so `row` counts sequence positions and `head` packs.
__device__ __forceinline__ void tma_load_packed(void* dst, const CUtensorMap* map, int d, int row, int head, int batch,
                                                uint64_t* bar) {
    const int32_t coords[5] = {d, 0, row, head, batch};
    ptx::cp_async_bulk_tensor(ptx::space_cluster, ptx::space_global, dst, map, coords, bar);
}

__device__ __forceinline__ void tma_store_packed(const CUtensorMap* map, int d, int row, int head, int batch,
                                                 const void* src) {
    const int32_t coords[5] = {d, 0, row, head, batch};
    ptx::cp_async_bulk_tensor(ptx::space_global, ptx::space_shared, map, coords, src);
}

__device__ __forceinline__ void tma_store_commit() { ptx::cp_async_bulk_commit_group(); }

// Waits until the committed stores have finished reading shared memory.
__device__ __forceinline__ void tma_store_wait_read() { ptx::cp_async_bulk_wait_group_read(ptx::n32_t<0>{}); }

__device__ __forceinline__ void tma_store_wait_all() { ptx::cp_async_bulk_wait_group(ptx::n32_t<0>{}); }

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"(map) : "memory");
}

// Orders this thread's ordinary shared-memory stores before later async-proxy reads (TMA store, wgmma).
__device__ __forceinline__ void fence_async_shared() { ptx::fence_proxy_async(ptx::space_shared); }

// ---- named barriers (ids 1..15; 0 is __syncthreads) over `threads` threads, a multiple of 32.
__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// Four 8×8 b16 matrices from the warp's registers (matrix i: lane l holds row l/4, columns 2·(l%4) and +1, in
// x_i) to shared memory; lanes 8i..8i+7 give the addresses of matrix i's eight 16-byte rows.
__device__ __forceinline__ void store_matrices(void* row, uint32_t x0, uint32_t x1, uint32_t x2, uint32_t x3) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(row));
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(x0), "r"(x1),
                 "r"(x2), "r"(x3)
                 : "memory");
}

// ---- per-warpgroup register budgets (all four warps of the warpgroup execute these).
template <int Registers>
__device__ __forceinline__ void registers_release() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(Registers));
}

template <int Registers>
__device__ __forceinline__ void registers_claim() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(Registers));
}

// 2^x on the SFU (ex2.approx: 2^-inf = +0).
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// tanh(x) = 1 − 2 / (e^2x + 1) with ex2.approx: absolute error about 1e-7 (tanh.approx's 2^-11 relative
// error, times a softcap of 30, would move a probability by 1.5 %); saturates to ±1 without NaN.
__device__ __forceinline__ float tanh_fast(float x) {
    constexpr float kTwoLog2e = 2.8853900817779268f;
    return 1.f - __fdividef(2.f, exp2_approx(x * kTwoLog2e) + 1.f);
}

}  // namespace flashsci::kernels::sm90
