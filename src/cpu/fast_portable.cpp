// The fast path on generic vectors: built without instruction-set flags, it runs on any CPU.
#include "cpu/simd_portable.h"
#include "cpu/fast_kernel.h"

namespace flashsci::cpu {

static_assert(simd::Portable::kLanes == kPortableTile.lanes && simd::Portable::kTileRows == kPortableTile.rows &&
              2 * simd::Portable::kLanes == kPortableTile.width);

void fast_block_portable(const FastProblem& p, const FastBlock& b, const FastScratch& w) {
    run_fast_block<simd::Portable>(p, b, w);
}

}  // namespace flashsci::cpu
