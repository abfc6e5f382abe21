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

#else

flashsci_status_t current_device(const char* function, DeviceInfo*) {
    return fail(FLASHSCI_STATUS_NO_DEVICE, "%s: this build of libflashsci has no CUDA backend (FLASHSCI_CUDA=OFF)",
                function);
}

bool cuda_available() { return false; }

#endif

}  // namespace flashsci
