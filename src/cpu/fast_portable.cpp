// The fast path on generic vectors: built without instruction-set flags, it runs on any CPU.
#include "cpu/simd_portable.h"
#include "cpu/fast_kernel.h"
#include "cpu/fast_backward_kernel.h"

namespace flashsci::cpu {

static_assert(simd::Portable::kLanes == kPortableTile.lanes && simd::Portable::kTileRows == kPortableTile.rows &&
              2 * simd::Portable::kLanes == kPortableTile.width);

void fast_block_portable(const FastProblem& p, const FastBlock& b, const FastScratch& w) {
    run_fast_block<simd::Portable>(p, b, w);
}

void fast_backward_portable(const FastBackwardProblem& p, const FastBackwardHead& h, const FastBackwardPart& part,
                            const FastBackwardScratch& w) {
    run_fast_backward<simd::Portable>(p, h, part, w);
}

}  // namespace flashsci::cpu
