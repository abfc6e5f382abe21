// The decoding path: few query rows per kv head (a token or a few per sequence), keys split across CTAs.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

#include "problem.h"

namespace flashsci::kernels::decode {

// True when the decoding kernel covers p on a device of compute capability `major`.x: fp16/bf16, head_dim
// up to 256, (heads_q / heads_kv) · seqlen_q <= 16 query rows per kv head, 16-byte aligned k and v with
// strides in whole 16-byte chunks. Every mask, window, softcap, ALiBi, dense or varlen.
bool supports(const Problem& p, int major);

// Whether the decoding kernel should run p rather than a fast path that takes one CTA per (sequence, kv head):
// with fewer of those than half the SMs, that path leaves most of the GPU idle and splitting the keys wins.
bool preferred(const Problem& p, int num_sms);

// Device scratch for p's partial results when its keys are split over several CTAs; 0 when they are not.
size_t workspace_bytes(const Problem& p, int num_sms);

// A short stable name of the kernel configuration that launch() would run for p.
const char* kernel_name(const Problem& p);

// Enqueues O (and LSE) for p on stream; requires supports(p, ...). `workspace` holds workspace_bytes(p,
// num_sms) bytes of device memory. Returns the launch's error.
cudaError_t launch(const Problem& p, void* workspace, int num_sms, cudaStream_t stream);

}  // namespace flashsci::kernels::decode
