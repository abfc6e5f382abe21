// The plan behind flashsci_plan_t: a backend, a device, and the problem as set so far.
#pragma once

#include <flashsci.h>

#include <vector>

#include "problem.h"
#include "cuda_device.h"

// Which kernel FLASHSCI_KERNEL (read at plan creation) forces, if any.
enum class ForcedKernel { none, general, decode, sm90, sm80 };

struct flashsci_plan_st {
    flashsci_backend_t backend = FLASHSCI_BACKEND_CPU;  // resolved: never AUTO
    int device = -1;                                     // CUDA device ordinal, -1 for CPU
    int cc_major = 0, cc_minor = 0, num_sms = 0;
    ForcedKernel forced = ForcedKernel::none;
    bool has_shape = false, has_dtype = false, has_custom_scale = false;
    flashsci_dtype_t dtype = FLASHSCI_DTYPE_FLOAT32;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    float custom_scale = 0.0f;
    int64_t window_left = -1, window_right = -1;  // -1: unbounded
    float softcap = 0.0f;                          // 0: off
    std::vector<float> alibi_slopes;               // [heads_q], or empty: off
    float* alibi_slopes_device = nullptr;          // CUDA plans: a copy on `device`, owned
    flashsci_precision_t precision = FLASHSCI_PRECISION_DEFAULT;
    flashsci_plan_st() = default;
    flashsci_plan_st(const flashsci_plan_st&) = delete;
    flashsci_plan_st& operator=(const flashsci_plan_st&) = delete;
    ~flashsci_plan_st() { flashsci::free_on_device(device, alibi_slopes_device); }
    // Shape and strides; pointers, scale, mask and element are filled per forward.
    flashsci::kernels::Problem shape{};
    // The backward's strides and determinism; its pointers are filled per backward.
    flashsci::kernels::Gradients gradients{};
};
