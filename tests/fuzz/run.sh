#!/usr/bin/env bash
# Builds the C ABI fuzzer (libFuzzer + ASan + UBSan, CPU backend only: src/*.cpp and src/cpu/*.cpp
# compiled with clang, no CUDA) and runs it from the committed corpus.
#
# Usage: tests/fuzz/run.sh [SECONDS]        fuzz for SECONDS (default 60); exit 0 when nothing was found
#        tests/fuzz/run.sh --merge DIR      fold the inputs in DIR into the committed corpus (minimised)
# Environment: FUZZ_BUILD_DIR (default build-fuzz/), CLANGXX (default clang++), FUZZ_JOBS (parallel workers, default 1).
# Needs clang with its compiler-rt (Debian: clang libclang-rt-14-dev llvm for llvm-symbolizer).
# A crash leaves its input in $FUZZ_BUILD_DIR/crash-*; replay it with: $FUZZ_BUILD_DIR/fuzz_api FILE
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
cxx=${CLANGXX:-clang++}
mkdir -p "$build/corpus"

"$cxx" -std=c++17 -g -O1 -fno-omit-frame-pointer -pthread \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root/include" -I"$root/src" -I"$root/kernels" \
    "$here/fuzz_api.cpp" "$root"/src/*.cpp "$root"/src/cpu/*.cpp -o "$build/fuzz_api"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "${1:-}" = "--merge" ]; then
    "$build/fuzz_api" -merge=1 "$here/corpus" "${2:?--merge needs a directory}"
    exit 0
fi
seconds=${1:-60}
jobs=${FUZZ_JOBS:-1}
cd "$build"  # crash-*, leak-* and fuzz-*.log files land here
# New inputs go to the build's corpus; the committed one is read only.
args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1
      "$build/corpus" "$here/corpus")
if [ "$jobs" -gt 1 ]; then
    "$build/fuzz_api" -fork="$jobs" "${args[@]}"
else
    "$build/fuzz_api" "${args[@]}"
fi
