// The CPU backend: exact attention with the online softmax, on all cores. Also the oracle of the GPU tests.
#pragma once

#include "problem.h"

namespace flashsci::cpu {

// Computes O = softmax(scale · Q·Kᵀ + mask)·V, and the LSE when p.lse is set, for p's host
// pointers (a dense batch, or a variable-length one whose offsets the ABI layer has checked);
// returns when done. Accumulates in fp32 (fp64 for fp32 inputs) and rounds the
// output to nearest even. A row that sees no key gets O = 0 and LSE = -inf.
// Expects a problem the ABI layer has validated. May throw std::bad_alloc; no thread
// outlives the call, whatever it throws.
void forward(const kernels::Problem& p);

}  // namespace flashsci::cpu
