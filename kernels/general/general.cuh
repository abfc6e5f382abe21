// The general path's template instances: one per (element type, head-dim bucket), each defined in its own .cu file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "general/backward_schedule.h"
#include "problem.h"

namespace flashsci::kernels::general {

// head_dim is a multiple of kHeadDimStep up to kMaxHeadDim; it runs in the smallest bucket that holds it.
constexpr int kHeadDimStep = 8;
constexpr int kHeadDimBuckets[] = {64, 128, 256};
constexpr int kMaxHeadDim = kHeadDimBuckets[2];
static_assert(kHeadDimBuckets[0] < kHeadDimBuckets[1] && kHeadDimBuckets[1] < kHeadDimBuckets[2]);

// Enqueues p (element type T, head_dim <= kHeadDim) on stream, on at most max_ctas CTAs; with `redo` (general.h:
// launch_redo), only its flagged (sequence, kv head) pairs. Returns the launch's error.
template <typename T, int kHeadDim>
cudaError_t launch_bucket(const Problem& p, const int* redo, int64_t max_ctas, cudaStream_t stream);

extern template cudaError_t launch_bucket<__half, 64>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<__half, 128>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<__half, 256>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 64>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 128>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<__nv_bfloat16, 256>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<float, 64>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<float, 128>(const Problem&, const int*, int64_t, cudaStream_t);
extern template cudaError_t launch_bucket<float, 256>(const Problem&, const int*, int64_t, cudaStream_t);

// The backward of p (element type T, head_dim <= kHeadDim) and g on stream, with schedule s (backward_schedule() for
// this bucket's keys per block) and its workspace; num_sms sizes the row passes' grids. Returns the launch's error.
template <typename T, int kHeadDim>
cudaError_t launch_backward_bucket(const Problem& p, const Gradients& g, const BackwardSchedule& s, void* workspace,
                                   int num_sms, cudaStream_t stream);

extern template cudaError_t launch_backward_bucket<__half, 64>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<__half, 128>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<__half, 256>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<__nv_bfloat16, 64>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<__nv_bfloat16, 128>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<__nv_bfloat16, 256>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<float, 64>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<float, 128>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);
extern template cudaError_t launch_backward_bucket<float, 256>(const Problem&, const Gradients&,
                                                         const BackwardSchedule&, void*, int, cudaStream_t);

}  // namespace flashsci::kernels::general
