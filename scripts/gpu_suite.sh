#!/usr/bin/env bash
# The GPU checks CI cannot run: build, the whole test suite with the [gpu] tests,
# compute-sanitizer over a reduced [gpu] set, and optionally the benchmark.
# Run on a GPU machine from the repository root. Logs go to $OUT (default ./gpu-logs).
# Usage: scripts/gpu_suite.sh [--no-sanitizer | --full-sanitizer] [--only-sanitizer] [--bench "ARGS"]
#                             [--bench-features "ARGS"]
#   --full-sanitizer: all four tools over every [gpu] test but [long], one process per (tool, test case), many
#                     at once (scripts/sanitize_cases.sh; SANITIZER_PARALLEL, SANITIZER_SECONDS and
#                     RACECHECK_ARGS tune it)
#   --only-sanitizer: skip the test runs (the sanitizers still run the [gpu] tests)
set -uo pipefail
out=${OUT:-$PWD/gpu-logs}
mkdir -p "$out"
build=$(realpath -m "${BUILD_DIR:-build-gpu}")
sanitize=1
slow_tools_filter="[quick]"
full_sanitizer=0
run_tests=1
bench_args=""
bench_features_args=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-sanitizer) sanitize=0 ;;
        --full-sanitizer) slow_tools_filter="~[long]"; full_sanitizer=1 ;;
        --only-sanitizer) run_tests=0 ;;
        --bench) bench_args=$2; shift ;;
        --bench-features) bench_features_args=$2; shift ;;
        *) echo "unknown argument $1"; exit 2 ;;
    esac
    shift
done
prefix_args=()
[ -d .deps/usr ] && prefix_args=(-DCMAKE_PREFIX_PATH="$PWD/.deps/usr")
status=0

echo "== card"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
echo "== build"
start=$(date +%s)
cmake -S . -B "$build" -G Ninja "${prefix_args[@]}" ${CMAKE_ARGS:-} >"$out/build.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" >>"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
echo "built in $(($(date +%s) - start)) s"

if [ $run_tests -eq 1 ]; then
    echo "== tests"
    ctest --test-dir "$build" --output-on-failure -LE gpu >"$out/ctest.log" 2>&1 || status=1
    tail -4 "$out/ctest.log"
    echo "== [gpu] tests"
    "$build/tests/flashsci_gpu_tests" --durations yes >"$out/gpu_tests.log" 2>&1 || status=1
    grep -v "^[0-9.]* s: " "$out/gpu_tests.log" | tail -25
fi

# One compute-sanitizer tool over the [gpu] tests selected by filter $2; its exit status in $out/sanitizer_$1.rc.
sanitize_tool() {
    timeout "${SANITIZER_TIMEOUT:-300}" compute-sanitizer --tool "$1" --error-exitcode 3 \
        "$build/tests/flashsci_gpu_tests" "$2" >"$out/sanitizer_$1.tmp" 2>&1
    echo $? >"$out/sanitizer_$1.rc"
}
report_tool() {
    echo "== compute-sanitizer $1"
    tail -3 "$out/sanitizer_$1.tmp"
    cat "$out/sanitizer_$1.tmp" >>"$out/sanitizer.log" && rm "$out/sanitizer_$1.tmp"
    rc=$(cat "$out/sanitizer_$1.rc") && rm "$out/sanitizer_$1.rc"
    [ "$rc" -eq 0 ] || { echo "compute-sanitizer $1: exit $rc"; status=1; }
}

if [ $sanitize -eq 1 ] && [ $full_sanitizer -eq 1 ]; then
    echo "== compute-sanitizer racecheck, memcheck, synccheck, initcheck (scripts/sanitize_cases.sh)"
    OUT="$out" "$(dirname "$0")/sanitize_cases.sh" "$build" "${SANITIZER_PARALLEL:-32}" "${SANITIZER_SECONDS:-400}"
    if [ ! -s "$out/sanitize_cases.txt" ] || grep -qv "^0 |" "$out/sanitize_cases.txt"; then status=1; fi
elif [ $sanitize -eq 1 ]; then
    # memcheck over every [gpu] test but the long ones; the slower race, sync and init checks over [quick].
    for tool in memcheck racecheck synccheck initcheck; do
        filter=$slow_tools_filter
        [ "$tool" = memcheck ] && filter="~[long]"
        sanitize_tool "$tool" "$filter"
        report_tool "$tool"
    done
fi

if [ $run_tests -eq 1 ] && python3 -c "import torch, pytest; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "== Python binding tests (torch CUDA tensors against SDPA)"
    FLASHSCI_LIBRARY="$build/libflashsci.so" PYTHONPATH="$PWD/bindings/python" \
        python3 -m pytest -q bindings/python/tests >"$out/pytest.log" 2>&1 || status=1
    tail -3 "$out/pytest.log"
fi

if [ -n "$bench_args" ]; then
    echo "== bench"
    FLASHSCI_LIBRARY="$build/libflashsci.so" PYTHONPATH="$PWD/bindings/python" \
        python3 bench/bench_attention.py --out "$out/bench.csv" $bench_args 2>&1 | tee "$out/bench.log"
fi
if [ -n "$bench_features_args" ]; then
    echo "== bench features"
    FLASHSCI_LIBRARY="$build/libflashsci.so" PYTHONPATH="$PWD/bindings/python" \
        python3 bench/bench_features.py --out "$out/bench_features.csv" $bench_features_args 2>&1 |
        tee "$out/bench_features.log"
fi
exit $status
