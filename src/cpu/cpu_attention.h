// The CPU backend: exact attention with the online softmax, on all cores. Also the oracle of the GPU tests.
#pragma once

#include "cpu/cpu_isa.h"
#include "problem.h"

namespace flashsci::cpu {

// Computes O = softmax(scale · Q·Kᵀ + mask)·V, and the LSE when p.lse is set, for p's host
// pointers (a dense batch, or a variable-length one whose offsets the ABI layer has checked);
// returns when done. Runs on the path FLASHSCI_CPU_ISA names when this CPU has it, else on the
// fastest one (cpu_isa.h), with thread_count() threads (cpu_threads.h). Accumulates in fp32 and
// rounds the output to nearest even; fp32 inputs keep fp32 accuracy (fast_block.h,
// kFp32ScoreBound). A row that sees no key gets O = 0 and LSE = -inf.
// Expects a problem the ABI layer has validated. May throw std::bad_alloc; no thread
// outlives the call, whatever it throws.
void forward(const kernels::Problem& p);

// The same on a given path, which must be available (isa_available()).
void forward(const kernels::Problem& p, Isa isa);

// The reference path (cpu_reference.cpp): one row block at a time with plain loops, fp64 accumulation
// for fp32 inputs.
void forward_reference(const kernels::Problem& p);

}  // namespace flashsci::cpu
