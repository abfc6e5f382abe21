#include <flashsci.h>

extern "C" {

#define FLASHSCI_STRINGIFY_(x) #x
#define FLASHSCI_STRINGIFY(x) FLASHSCI_STRINGIFY_(x)

int flashsci_version(void) { return FLASHSCI_VERSION; }

const char* flashsci_version_string(void) {
    return FLASHSCI_STRINGIFY(FLASHSCI_VERSION_MAJOR) "." FLASHSCI_STRINGIFY(FLASHSCI_VERSION_MINOR) "." FLASHSCI_STRINGIFY(
        FLASHSCI_VERSION_PATCH);
}

}  // extern "C"
