// Which instruction set the CPU backend runs on: chosen once per call from cpuid, or forced by
// FLASHSCI_CPU_ISA (reference | portable | avx2 | avx512).
#pragma once

namespace flashsci::cpu {

enum class Isa : int {
    reference,  // the plain path: one row at a time, fp64 accumulation for fp32 inputs (the tests' second opinion)
    portable,   // the blocked fast path on the compiler's generic vectors (any CPU)
    avx2,       // the blocked fast path on AVX2 + FMA (+ F16C)
    avx512,     // the blocked fast path on AVX-512F
};

// Whether this build and this CPU (and its OS) can run `isa`.
bool isa_available(Isa isa);

// The fastest available path.
Isa best_isa();

// The path FLASHSCI_CPU_ISA names, or best_isa() when it is unset or empty. Returns false, with
// *unusable set to the variable's value, when the value names no path or one this CPU cannot run.
bool chosen_isa(Isa* isa, const char** unusable);

// "cpu_reference", "cpu_portable", "cpu_avx2" or "cpu_avx512": static strings, shown by
// flashsci_plan_get_kernel_name().
const char* kernel_name(Isa isa);

// "cpu_backward_reference", "cpu_backward_portable", "cpu_backward_avx2" or "cpu_backward_avx512": the backward's
// names, static strings.
const char* backward_kernel_name(Isa isa);

// The Isa whose kernel_name() or backward_kernel_name() is `name` (compared by address first, then by text); reference if none.
Isa isa_of_kernel_name(const char* name);

}  // namespace flashsci::cpu
