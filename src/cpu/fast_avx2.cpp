// The fast path on AVX2 + FMA + F16C. CMakeLists.txt builds this file alone with those flags; the driver
// calls it only where cpuid reports them (cpu_isa.cpp).
#if defined(FLASHSCI_CPU_X86)
#include "cpu/simd_avx2.h"
#include "cpu/fast_kernel.h"
#include "cpu/fast_backward_kernel.h"

namespace flashsci::cpu {

static_assert(simd::Avx2::kLanes == kAvx2Tile.lanes && simd::Avx2::kTileRows == kAvx2Tile.rows &&
              2 * simd::Avx2::kLanes == kAvx2Tile.width);

void fast_block_avx2(const FastProblem& p, const FastBlock& b, const FastScratch& w) {
    run_fast_block<simd::Avx2>(p, b, w);
}

void fast_backward_avx2(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                        const FastBackwardScratch& w) {
    run_fast_backward<simd::Avx2>(p, h, part, w);
}

}  // namespace flashsci::cpu
#endif
