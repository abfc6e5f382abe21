// select_kernel(): the one place that decides whether a problem runs, and on which kernel.
#pragma once

#include <flashsci.h>

#include <cstddef>

#include "problem.h"
#include "plan.h"

namespace flashsci {

enum class KernelKind { cpu, cuda_general, decode, sm90, sm80, cpu_backward, cuda_general_backward, sm80_backward };

struct KernelSelection {
    KernelKind kind;
    const char* name;        // static, shown by flashsci_plan_get_kernel_name()
    size_t workspace_bytes;  // device scratch the kernel needs
};

// Picks the kernel for p's forward, or, given the backward's gradients, for its backward, on plan's backend and
// device: NOT_SUPPORTED (message set) when none can run it.
flashsci_status_t select_kernel(const char* function, const flashsci_plan_st& plan, const kernels::Problem& p,
                                KernelSelection* selection, const kernels::Gradients* backward = nullptr);

// Runs the selected kernel (a backward one with the gradients it was selected for): synchronously on the CPU,
// enqueued on `stream` on CUDA.
flashsci_status_t run_kernel(const char* function, const KernelSelection& selection, const flashsci_plan_st& plan,
                             const kernels::Problem& p, void* workspace, flashsci_stream_t stream,
                             const kernels::Gradients* backward = nullptr);

}  // namespace flashsci
