// The CUDA runtime as src/ needs it: host calls only, and absent from CPU-only builds.
#pragma once

#include <flashsci.h>

#include <cstdint>

#ifdef FLASHSCI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace flashsci {

struct DeviceInfo {
    int ordinal, cc_major, cc_minor, num_sms;
};

// The device current on this thread, or NO_DEVICE (with the message set) when none is usable.
flashsci_status_t current_device(const char* function, DeviceInfo* info);

// Whether a usable CUDA device exists, without setting any message.
bool cuda_available();

struct NamedPointer {
    const char* name;
    const void* pointer;  // NULL: not checked
};

// Where the driver can tell: INVALID_VALUE (message naming the argument) for the first pointer that is
// host memory (ordinary or page-locked) or memory of a device other than `device`. Pointers the driver
// knows nothing about pass. Pure queries, legal while the calling thread captures a CUDA graph.
flashsci_status_t check_device_pointers(const char* function, const NamedPointer* pointers, int count, int device);

// Copies `count` host floats into new memory of `device` (*copy receives it); OUT_OF_MEMORY or DEVICE_ERROR
// (message set) on failure. The caller's current device is restored.
flashsci_status_t copy_to_device(const char* function, int device, const float* host, int64_t count, float** copy);

// Frees memory from copy_to_device(); NULL is a no-op.
void free_on_device(int device, float* copy);

#ifdef FLASHSCI_HAVE_CUDA
// Makes `device` current for a scope, restoring the caller's afterwards.
class CurrentDevice {
public:
    explicit CurrentDevice(int device) {
        if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
            error_ = cudaSetDevice(device);
            switched_ = error_ == cudaSuccess;
        }
    }
    ~CurrentDevice() {
        if (switched_) cudaSetDevice(previous_);
    }
    cudaError_t error() const { return error_; }

private:
    int previous_ = -1;
    bool switched_ = false;
    cudaError_t error_ = cudaSuccess;
};
#endif

}  // namespace flashsci
