// Errors at the ABI boundary: the thread's last message, and the guard every entry point runs in.
#pragma once

#include <flashsci.h>

#include <cstring>
#include <exception>
#include <new>

namespace flashsci {

// Records a printf-style message as this thread's last error and returns `status`.
flashsci_status_t fail(flashsci_status_t status, const char* format, ...) __attribute__((format(printf, 2, 3)));

// The integer a C caller passed for an enum parameter, read without loading the enum: in C++ a value
// outside the enumerators' range (7 for a 0..2 enum) is not a value of the type, and loading it is undefined.
template <class Enum>
int passed_value(const Enum& e) {
    static_assert(sizeof(Enum) == sizeof(int), "C enums of the ABI are int-sized");
    int value;
    std::memcpy(&value, &e, sizeof value);
    return value;
}

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
