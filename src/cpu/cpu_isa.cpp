#include "cpu/cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace flashsci::cpu {
namespace {

struct IsaName {
    Isa isa;
    const char* variable_value;  // FLASHSCI_CPU_ISA
    const char* kernel_name;
    const char* backward_kernel_name;
};

constexpr IsaName kIsaNames[] = {
    {Isa::reference, "reference", "cpu_reference", "cpu_backward_reference"},
    {Isa::portable, "portable", "cpu_portable", "cpu_backward_portable"},
    {Isa::avx2, "avx2", "cpu_avx2", "cpu_backward_avx2"},
    {Isa::avx512, "avx512", "cpu_avx512", "cpu_backward_avx512"},
};

// Fastest first.
constexpr Isa kPreference[] = {Isa::avx512, Isa::avx2, Isa::portable};

}  // namespace

bool isa_available(Isa isa) {
    switch (isa) {
        case Isa::reference:
        case Isa::portable: return true;
#if defined(FLASHSCI_CPU_X86)
        // libgcc's checks include the OS's XSAVE support for the vector state (XCR0).
        case Isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
        case Isa::avx512: return __builtin_cpu_supports("avx512f");
#else
        case Isa::avx2:
        case Isa::avx512: return false;
#endif
    }
    return false;
}

Isa best_isa() {
    for (Isa isa : kPreference)
        if (isa_available(isa)) return isa;
    return Isa::portable;
}

bool chosen_isa(Isa* isa, const char** unusable) {
    const char* value = std::getenv("FLASHSCI_CPU_ISA");
    if (value == nullptr || *value == '\0') {
        *isa = best_isa();
        return true;
    }
    for (const IsaName& n : kIsaNames)
        if (std::strcmp(value, n.variable_value) == 0 && isa_available(n.isa)) {
            *isa = n.isa;
            return true;
        }
    *unusable = value;
    return false;
}

const char* kernel_name(Isa isa) {
    for (const IsaName& n : kIsaNames)
        if (n.isa == isa) return n.kernel_name;
    return kIsaNames[0].kernel_name;
}

const char* backward_kernel_name(Isa isa) {
    for (const IsaName& n : kIsaNames)
        if (n.isa == isa) return n.backward_kernel_name;
    return kIsaNames[0].backward_kernel_name;
}

Isa isa_of_kernel_name(const char* name) {
    for (const IsaName& n : kIsaNames)
        if (name == n.kernel_name || name == n.backward_kernel_name) return n.isa;
    for (const IsaName& n : kIsaNames)
        if (std::strcmp(name, n.kernel_name) == 0 || std::strcmp(name, n.backward_kernel_name) == 0) return n.isa;
    return Isa::reference;
}

}  // namespace flashsci::cpu
