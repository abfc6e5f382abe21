// The fast path on AVX-512F. CMakeLists.txt builds this file alone with that flag; the driver calls it only
// where cpuid reports it (cpu_isa.cpp).
#if defined(FLASHSCI_CPU_X86)
#include "cpu/simd_avx512.h"
#include "cpu/fast_kernel.h"
#include "cpu/fast_backward_kernel.h"

namespace flashsci::cpu {

static_assert(simd::Avx512::kLanes == kAvx512Tile.lanes && simd::Avx512::kTileRows == kAvx512Tile.rows &&
              2 * simd::Avx512::kLanes == kAvx512Tile.width);

void fast_block_avx512(const FastProblem& p, const FastBlock& b, const FastScratch& w) {
    run_fast_block<simd::Avx512>(p, b, w);
}

void fast_backward_avx512(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                          const FastBackwardScratch& w) {
    run_fast_backward<simd::Avx512>(p, h, part, w);
}

}  // namespace flashsci::cpu
#endif
