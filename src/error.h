// Errors at the ABI boundary: the thread's last message, and the guard every entry point runs in.
#pragma once

#include <flashsci.h>

#include <exception>
#include <new>

namespace flashsci {

// Records a printf-style message as this thread's last error and returns `status`.
flashsci_status_t fail(flashsci_status_t status, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Runs `body` (which returns a status) so that no C++ exception crosses the C ABI.
template <class Body>
flashsci_status_t guarded(const char* function, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(FLASHSCI_STATUS_OUT_OF_MEMORY, "%s: out of host memory", function);
    } catch (const std::exception& e) {
        return fail(FLASHSCI_STATUS_INTERNAL_ERROR, "%s: unexpected exception: %s", function, e.what());
    } catch (...) {
        return fail(FLASHSCI_STATUS_INTERNAL_ERROR, "%s: unexpected exception", function);
    }
}

}  // namespace flashsci
