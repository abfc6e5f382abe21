// The general CUDA path: correct for every problem the ABI accepts.
#pragma once

#include <cuda_runtime_api.h>

#include "common/problem.h"

namespace flashsci::kernels::general {

// Enqueues O (and LSE) for p on stream; returns the launch's error, cudaSuccess when enqueued.
cudaError_t launch(const Problem& p, cudaStream_t stream);

}  // namespace flashsci::kernels::general
