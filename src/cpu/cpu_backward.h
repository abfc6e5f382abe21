// The CPU backward: the gradients of attention on all cores. Its reference path is the oracle of the GPU backward's
// tests.
#pragma once

#include "cpu/cpu_isa.h"
#include "problem.h"

namespace flashsci::cpu {

// Computes dq, dk and dv of g for p's host pointers (q, k, v, and the forward's o and lse, all read), for a dense
// batch or a variable-length one whose offsets the ABI layer has checked, on path `isa`; returns when done. Every
// element of dq, dk and dv inside a sequence is written (0 for a row that sees no key, and for a key no row sees);
// nothing else is. Bit-identical from run to run whatever the number of threads: every output element has one
// writer and a fixed order of sums. Rounds each gradient once to nearest even.
// - Isa::reference: accumulates in fp32 (fp64 for fp32 inputs), one row against a tile of keys at a time.
// - the fast paths: accumulate in fp32 for every input type (fp32 inputs get fp32-level gradients), on
//   register-tiled blocks; one work item per (sequence, kv head), so at most batch·heads_kv threads are busy.
// Expects a problem the ABI layer has validated. May throw std::bad_alloc; no thread outlives the call.
void backward(const kernels::Problem& p, const kernels::Gradients& g, Isa isa);

// backward() on the path FLASHSCI_CPU_ISA names, or best_isa() when it names none this CPU runs.
void backward(const kernels::Problem& p, const kernels::Gradients& g);

}  // namespace flashsci::cpu
