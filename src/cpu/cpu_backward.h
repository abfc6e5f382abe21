// The CPU backward: the gradients of attention, exact, on all cores. Also the oracle of the GPU backward's tests.
#pragma once

#include "problem.h"

namespace flashsci::cpu {

// Computes dq, dk and dv of g for p's host pointers (q, k, v, and the forward's o and lse, all read), for a dense
// batch or a variable-length one whose offsets the ABI layer has checked; returns when done. Accumulates in fp32
// (fp64 for fp32 inputs) and rounds each gradient once to nearest even. Every element of dq, dk and dv inside a
// sequence is written (0 for a row that sees no key, and for a key no row sees); nothing else is. Bit-identical
// from run to run whatever the number of threads: every output element has one writer and a fixed order of sums.
// Expects a problem the ABI layer has validated. May throw std::bad_alloc; no thread outlives the call.
void backward(const kernels::Problem& p, const kernels::Gradients& g);

}  // namespace flashsci::cpu
