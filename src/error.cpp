#include "error.h"

#include <cstdarg>
#include <cstdio>

namespace flashsci {
namespace {
constexpr size_t kMessageCapacity = 1024;
thread_local char last_message[kMessageCapacity] = "";
}  // namespace

flashsci_status_t fail(flashsci_status_t status, const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::vsnprintf(last_message, kMessageCapacity, format, args);
    va_end(args);
    return status;
}

}  // namespace flashsci

extern "C" {

const char* flashsci_last_error(void) { return flashsci::last_message; }

const char* flashsci_status_string(flashsci_status_t status) {
    const int value = flashsci::passed_value(status);
    if (value < FLASHSCI_STATUS_SUCCESS || value > FLASHSCI_STATUS_INTERNAL_ERROR) return "unknown status";
    switch (static_cast<flashsci_status_t>(value)) {
        case FLASHSCI_STATUS_SUCCESS: return "success";
        case FLASHSCI_STATUS_INVALID_VALUE: return "invalid value";
        case FLASHSCI_STATUS_NOT_SUPPORTED: return "not supported";
        case FLASHSCI_STATUS_NO_DEVICE: return "no CUDA device";
        case FLASHSCI_STATUS_OUT_OF_MEMORY: return "out of memory";
        case FLASHSCI_STATUS_DEVICE_ERROR: return "device error";
        case FLASHSCI_STATUS_INTERNAL_ERROR: return "internal error";
    }
    return "unknown status";
}

}  // extern "C"
