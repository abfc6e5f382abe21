#!/usr/bin/env bash
# The CPU test suite under sanitizers, CUDA off:
#   thread   ThreadSanitizer over the [concurrency] tests (threads sharing a plan, concurrent plan
#            lifetimes, per-thread errors) and the API contract; the CPU backend's own std::threads included.
#   address  AddressSanitizer + LeakSanitizer + UBSan over every CPU test.
# GCC's sanitizers link as shared runtimes, so the library keeps its --no-undefined link.
#
# Usage: tests/fuzz/sanitizers.sh [thread] [address]     (default: both)
# Environment: SANITIZER_BUILD_ROOT (default build-sanitizers/), CXX (default g++), CMAKE_ARGS, CMAKE_PREFIX_PATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build_root=${SANITIZER_BUILD_ROOT:-$root/build-sanitizers}
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(thread address)
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
prefix=()
[ -n "${CMAKE_PREFIX_PATH:-}" ] && prefix=(-DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH")

build() {  # build DIR FLAGS
    local dir=$1 flags=$2
    # shellcheck disable=SC2086  # CMAKE_ARGS is a list of arguments
    cmake -S "$root" -B "$dir" "${generator[@]}" "${prefix[@]}" -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
        -DFLASHSCI_CUDA=OFF -DFLASHSCI_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
        -DCMAKE_SHARED_LINKER_FLAGS="$flags" ${CMAKE_ARGS:-} >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" --parallel "$(nproc)" --target flashsci_tests
}

for kind in "${kinds[@]}"; do
    case "$kind" in
        thread)
            echo "== ThreadSanitizer: [concurrency] and [api] tests"
            mkdir -p "$build_root"
            build "$build_root/thread" "-fsanitize=thread"
            TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
                "$build_root/thread/tests/flashsci_tests" "[concurrency],[api]" --durations yes
            ;;
        address)
            echo "== AddressSanitizer + LeakSanitizer + UBSan: every CPU test"
            mkdir -p "$build_root"
            build "$build_root/address" "-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all"
            ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 strict_string_checks=1 ${ASAN_OPTIONS:-}" \
                UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}" \
                "$build_root/address/tests/flashsci_tests" --durations yes
            ;;
        *) echo "unknown sanitizer '$kind' (thread, address)" >&2; exit 2 ;;
    esac
done
