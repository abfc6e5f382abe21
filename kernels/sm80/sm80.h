// The sm_80 forward: mma.sync, ldmatrix and cp.async (FlashAttention-2's algorithm) on every GPU of compute
// capability 8.0 and later that the Hopper path leaves to it.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "problem.h"

namespace flashsci::kernels::sm80 {

// True when this build holds the sm_80 forward for p's head-dim bucket and it covers p on a device of compute
// capability `major`.x: fp16/bf16, or fp32 unless p.precision is ieee (fp32 runs on tf32 tensor cores: 3xTF32 for
// fp32_level, one pass for tf32); head_dim a multiple of 8 up to 256; q, k, v and o 16-byte aligned with strides in
// whole 16-byte chunks (a stride of a dimension with one entry is free); sequence lengths and totals under 2^30; a
// positive finite scale. Every mask, window, softcap, ALiBi, GQA/MQA, dense or varlen.
bool supports(const Problem& p, int major);

// What supports() requires, in words, for NOT_SUPPORTED messages.
const char* requirements();

// Device scratch for p: the redo flags of a banded (causal or windowed) problem, else 0.
size_t workspace_bytes(const Problem& p);

// Banded problems: the flags in `workspace` that launch() sets where a row's O gets a NaN or an infinity with a finite
// softmax sum, which may come from a masked key's V multiplied by its zero weight on the tensor cores: [0] when any
// is set, [1 + b·heads_kv + g] for sequence b and kv head g. The caller must then recompute O of those pairs exactly
// (general::launch_redo). Null otherwise.
int* redo_flags(const Problem& p, void* workspace);

// A short stable name of the kernel launch() would run for p: sm80_hd<bucket>_<f16|bf16|f32_3xtf32|f32_tf32>.
const char* kernel_name(const Problem& p);

// Enqueues O (and LSE) for p on stream on the current device; requires supports(p, ...). `workspace` holds
// workspace_bytes(p) bytes of device memory. Returns the launch's error.
cudaError_t launch(const Problem& p, void* workspace, cudaStream_t stream);

// ---- the backward (bwd.cu) ------------------------------------------------------------------------------------------

// True when this build holds the sm_80 backward for p's head-dim bucket and it covers p's backward with gradients g on
// a device of compute capability `major`.x: supports(p, major), and dout, dq, dk and dv 16-byte aligned with strides
// in whole 16-byte chunks.
bool supports_backward(const Problem& p, const Gradients& g, int major);

// What supports_backward() requires, in words, for NOT_SUPPORTED messages.
const char* backward_requirements();

// A short stable name of the backward launch_backward() runs for p: sm80_bwd_hd<bucket>_<f16|bf16>.
const char* backward_kernel_name(const Problem& p);

// Device scratch of p's backward on a GPU of num_sms SMs (any family): D = rowsum(dO∘O) and the fp32 dQ accumulator,
// laid out as general/backward_schedule.h says.
size_t backward_workspace_bytes(const Problem& p, const Gradients& g, int num_sms);

// Enqueues dq, dk and dv of p's backward on stream on the current device; requires supports_backward(p, g, ...).
// `workspace` holds backward_workspace_bytes(p, g, num_sms) bytes of device memory. Returns the launches' error.
cudaError_t launch_backward(const Problem& p, const Gradients& g, void* workspace, int num_sms, cudaStream_t stream);

}  // namespace flashsci::kernels::sm80
