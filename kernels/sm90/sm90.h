// The Hopper (sm_90a) fast path: TMA + WGMMA, warp-specialised, FA3-class.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "problem.h"

namespace flashsci::kernels::sm90 {

// True when this build holds sm_90a code and the fast path covers p on a device of
// compute capability `major`.`minor` (element type, head_dim, strides and pointer alignment).
bool supports(const Problem& p, int major, int minor);

// Device scratch the fast path needs for p (e.g. a tile counter); 0 when none.
size_t workspace_bytes(const Problem& p);

// Banded and varlen problems: the flags in `workspace` that launch() sets where O gets a NaN or an infinity, which
// may come from a masked key's V multiplied by the key's zero weight on the tensor cores: [0] when any is set,
// [1 + b·heads_kv + g] for sequence b and kv head g. The caller must then recompute O of those pairs exactly
// (general::launch_redo). Null otherwise.
int* redo_flags(const Problem& p, void* workspace);

// A short stable name of the kernel configuration that launch() would run for p.
const char* kernel_name(const Problem& p);

// The head dims this build's fast path runs, e.g. "64/96/128/192/256" (CMake's FLASHSCI_SM90_HEAD_DIMS).
const char* head_dims_text();

// Enqueues O (and LSE) for p on stream; requires supports(p, ...). `workspace` holds
// workspace_bytes(p) bytes of device memory. Returns the launch's error.
cudaError_t launch(const Problem& p, void* workspace, int num_sms, cudaStream_t stream);

}  // namespace flashsci::kernels::sm90
