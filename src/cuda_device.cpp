#include "cuda_device.h"

#include "error.h"

#ifdef FLASHSCI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace flashsci {

#ifdef FLASHSCI_HAVE_CUDA

flashsci_status_t current_device(const char* function, DeviceInfo* info) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        cudaGetLastError();  // leave no error behind for the caller's CUDA code
        return fail(FLASHSCI_STATUS_NO_DEVICE, "%s: no usable CUDA device (%s)", function,
                    err != cudaSuccess ? cudaGetErrorString(err) : "no devices found");
    }
    DeviceInfo d{};
    if ((err = cudaGetDevice(&d.ordinal)) != cudaSuccess ||
        (err = cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, d.ordinal)) != cudaSuccess ||
        (err = cudaDeviceGetAttribute(&d.cc_minor, cudaDevAttrComputeCapabilityMinor, d.ordinal)) != cudaSuccess ||
        (err = cudaDeviceGetAttribute(&d.num_sms, cudaDevAttrMultiProcessorCount, d.ordinal)) != cudaSuccess) {
        cudaGetLastError();
        return fail(FLASHSCI_STATUS_NO_DEVICE, "%s: cannot query the current CUDA device: %s", function,
                    cudaGetErrorString(err));
    }
    *info = d;
    return FLASHSCI_STATUS_SUCCESS;
}

bool cuda_available() {
    int count = 0;
    bool available = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    cudaGetLastError();
    return available;
}

namespace {

// Puts the calling thread in relaxed capture mode for a scope, so that a query cannot invalidate a
// global-mode capture in progress (pointer queries are not capture-unsafe, but the rule is the driver's).
class RelaxedCaptureScope {
public:
    RelaxedCaptureScope() { restore_ = cudaThreadExchangeStreamCaptureMode(&mode_) == cudaSuccess; }
    ~RelaxedCaptureScope() {
        if (restore_) cudaThreadExchangeStreamCaptureMode(&mode_);
    }
    RelaxedCaptureScope(const RelaxedCaptureScope&) = delete;
    RelaxedCaptureScope& operator=(const RelaxedCaptureScope&) = delete;

private:
    cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
    bool restore_ = false;
};

flashsci_status_t check_device_pointer(const char* function, const NamedPointer& p, int device) {
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, p.pointer) != cudaSuccess) {
        cudaGetLastError();  // the driver cannot tell; leave no error behind
        return FLASHSCI_STATUS_SUCCESS;
    }
    switch (attributes.type) {
        case cudaMemoryTypeUnregistered:
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: %s (%p) is not CUDA memory (a host pointer?); the CUDA backend needs device memory of "
                        "device %d",
                        function, p.name, p.pointer, device);
        case cudaMemoryTypeHost:
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: %s (%p) is page-locked host memory; the CUDA backend needs device memory of device %d",
                        function, p.name, p.pointer, device);
        case cudaMemoryTypeDevice:
            if (attributes.device != device)
                return fail(FLASHSCI_STATUS_INVALID_VALUE,
                            "%s: %s (%p) is memory of device %d; the plan runs on device %d (the device current at "
                            "flashsci_plan_create)",
                            function, p.name, p.pointer, attributes.device, device);
            return FLASHSCI_STATUS_SUCCESS;
        case cudaMemoryTypeManaged: break;  // reachable from every device
    }
    return FLASHSCI_STATUS_SUCCESS;
}

}  // namespace

flashsci_status_t check_device_pointers(const char* function, const NamedPointer* pointers, int count, int device) {
    const RelaxedCaptureScope relaxed;
    for (int i = 0; i < count; ++i)
        if (pointers[i].pointer != nullptr) {
            const flashsci_status_t status = check_device_pointer(function, pointers[i], device);
            if (status != FLASHSCI_STATUS_SUCCESS) return status;
        }
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t copy_to_device(const char* function, int device, const float* host, int64_t count, float** copy) {
    CurrentDevice scope(device);
    if (scope.error() != cudaSuccess)
        return fail(FLASHSCI_STATUS_DEVICE_ERROR, "%s: cannot make the plan's device %d current: %s", function, device,
                    cudaGetErrorString(scope.error()));
    const size_t bytes = size_t(count) * sizeof(float);
    void* memory = nullptr;
    cudaError_t err = cudaMalloc(&memory, bytes);
    if (err == cudaErrorMemoryAllocation)
        return fail(FLASHSCI_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes on device %d", function, bytes,
                    device);
    if (err == cudaSuccess) err = cudaMemcpy(memory, host, bytes, cudaMemcpyHostToDevice);
    if (err != cudaSuccess) {
        cudaFree(memory);
        return fail(FLASHSCI_STATUS_DEVICE_ERROR, "%s: copying %zu bytes to device %d failed: %s", function, bytes,
                    device, cudaGetErrorString(err));
    }
    *copy = static_cast<float*>(memory);
    return FLASHSCI_STATUS_SUCCESS;
}

void free_on_device(int device, float* copy) {
    if (copy == nullptr) return;
    CurrentDevice scope(device);
    cudaFree(copy);
}

#else

flashsci_status_t copy_to_device(const char* function, int, const float*, int64_t, float**) {
    return fail(FLASHSCI_STATUS_NO_DEVICE, "%s: this build of libflashsci has no CUDA backend (FLASHSCI_CUDA=OFF)",
                function);
}

void free_on_device(int, float*) {}

flashsci_status_t current_device(const char* function, DeviceInfo*) {
    return fail(FLASHSCI_STATUS_NO_DEVICE, "%s: this build of libflashsci has no CUDA backend (FLASHSCI_CUDA=OFF)",
                function);
}

bool cuda_available() { return false; }

flashsci_status_t check_device_pointers(const char*, const NamedPointer*, int, int) { return FLASHSCI_STATUS_SUCCESS; }

#endif

}  // namespace flashsci
