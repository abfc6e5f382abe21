// The general CUDA path: correct for every problem the ABI accepts.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "problem.h"

namespace flashsci::kernels::general {

// Enqueues O (and LSE) for p on stream; returns the launch's error, cudaSuccess when enqueued.
cudaError_t launch(const Problem& p, cudaStream_t stream);

// Enqueues O for p as launch() would (not LSE: the caller's is right), but only for the (sequence b, kv head g)
// pairs whose flag redo[1 + b·heads_kv + g] (device memory, written by an earlier kernel on the stream) is set;
// one CTA per SM (num_sms), which exits at once unless redo[0] is set. Returns the launch's error.
cudaError_t launch_redo(const Problem& p, const int* redo, int num_sms, cudaStream_t stream);

// The backward (FlashAttention-2's algorithm on the general path): the device scratch launch_backward() needs for p
// and g on a GPU of num_sms SMs, in bytes.
size_t backward_workspace_bytes(const Problem& p, const Gradients& g, int num_sms);

// Enqueues dq, dk, dv for p (q, k, v, o and lse read) and g on stream, using `workspace` (at least
// backward_workspace_bytes(), uninitialised); returns the launch's error, cudaSuccess when enqueued.
cudaError_t launch_backward(const Problem& p, const Gradients& g, void* workspace, int num_sms, cudaStream_t stream);

}  // namespace flashsci::kernels::general
