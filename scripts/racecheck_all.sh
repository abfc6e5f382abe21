#!/usr/bin/env bash
# compute-sanitizer racecheck over every [gpu] test case but [long], one process per test case and
# several at once (racecheck serialises each kernel, so a single process would take hours; the GPU
# has room for many). Usage: scripts/racecheck_all.sh BUILD_DIR [PARALLEL] [SECONDS_PER_CASE]
# Writes $OUT/racecheck_all.txt: one line per case (exit status, hazard summary, test summary).
# RACECHECK_ARGS adds sanitizer options, e.g. "--kernel-name kns=fwd_kernel" to check only the sm90 kernels
# (the general path's cases take > 10 minutes each under racecheck when they run many shapes).
# Cases tagged [racecheck-sm90-only] always get that filter: their general-path shapes would take longer
# than any limit under racecheck, and the general kernel is racechecked by the general-path cases.
set -uo pipefail
build=$1
parallel=${2:-16}
limit=${3:-200}
out=${OUT:-$PWD/gpu-logs}
logs=$(mktemp -d)
mkdir -p "$out"
"$build/tests/flashsci_gpu_tests" --list-test-names-only "~[long]" | sed '/^$/d' >"$logs/names"
"$build/tests/flashsci_gpu_tests" --list-test-names-only "[racecheck-sm90-only]" | sed '/^$/d' >"$logs/sm90_only"
echo "$(wc -l <"$logs/names") test cases, $parallel at a time, ${limit} s each"
# Catch's test spec treats ',', '[' and ']' specially: escape them.
export build limit logs RACECHECK_ARGS="${RACECHECK_ARGS:-}"
# Each line: index, 1 for a [racecheck-sm90-only] case, name.
awk 'NR == FNR { only[$0] = 1; next } { print FNR, ($0 in only) ? 1 : 0, $0 }' "$logs/sm90_only" "$logs/names" |
    sed 's/[],[]/\\&/g' | xargs -d '\n' -P "$parallel" -n1 sh -c '
    i=${1%% *}; rest=${1#* }; sm90_only=${rest%% *}; name=${rest#* }; args=$RACECHECK_ARGS
    [ "$sm90_only" = 1 ] && args="--kernel-name kns=fwd_kernel"
    timeout "$limit" compute-sanitizer --tool racecheck --error-exitcode 3 $args "$build/tests/flashsci_gpu_tests" "$name" \
        >"$logs/$i.log" 2>&1
    echo "$? | $(grep -h "RACECHECK SUMMARY" "$logs/$i.log" | tail -1) | $(grep -hE "All tests passed|test cases:" "$logs/$i.log" | tail -1) | $name${args:+ ($args)}" \
        >"$logs/$i.result"' _
cat "$logs"/*.result | sort -n >"$out/racecheck_all.txt"
grep -c "^0 |" "$out/racecheck_all.txt" | sed 's/$/ cases exited 0/'
grep -v "^0 |" "$out/racecheck_all.txt" || true
