#include "cpu/cpu_threads.h"

#include <cerrno>
#include <cstdlib>

#if defined(__linux__)
#include <sched.h>
#endif

namespace flashsci::cpu {
namespace {

// The cores the scheduler lets this process use (taskset, cgroup cpusets), else every core.
int64_t available_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

int64_t thread_count() {
    if (const char* value = std::getenv("FLASHSCI_NUM_THREADS")) {
        char* end = nullptr;
        errno = 0;
        const long long requested = std::strtoll(value, &end, 10);
        if (errno == 0 && end != value && *end == '\0' && requested > 0) return requested;
    }
    return available_cores();
}

}  // namespace flashsci::cpu
