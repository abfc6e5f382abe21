// The general CUDA path: correct for every problem the ABI accepts.
#pragma once

#include <cuda_runtime_api.h>

#include "common/problem.h"

namespace flashsci::kernels::general {

// Enqueues O (and LSE) for p on stream; returns the launch's error, cudaSuccess when enqueued.
cudaError_t launch(const Problem& p, cudaStream_t stream);

// Enqueues O for p as launch() would (not LSE: the caller's is right), but only for the (sequence b, kv head g)
// pairs whose flag redo[1 + b·heads_kv + g] (device memory, written by an earlier kernel on the stream) is set;
// one CTA per SM (num_sms), which exits at once unless redo[0] is set. Returns the launch's error.
cudaError_t launch_redo(const Problem& p, const int* redo, int num_sms, cudaStream_t stream);

}  // namespace flashsci::kernels::general
