#!/usr/bin/env bash
# compute-sanitizer over every [gpu] test case but [long], one process per (tool, test case), many at once:
# a single process per tool takes longer than a device call allows (racecheck serialises each kernel), and
# the GPU has room for many. Racecheck runs first, being the slowest.
# Usage: scripts/sanitize_cases.sh BUILD_DIR [PARALLEL] [SECONDS_PER_CASE] [TOOLS]   (TOOLS: comma-separated,
#        default racecheck,memcheck,synccheck,initcheck)
# Writes $OUT/sanitize_cases.txt: one line per (tool, case): exit status, the tool's summary, the test summary.
# SANITIZE_CASES selects other cases (a Catch test spec; default "~[long]", e.g. "sm90: packed GQA*").
# RACECHECK_ARGS adds racecheck options, e.g. "--kernel-name kns=fwd_kernel" to check only the sm90 kernels.
# Cases tagged [racecheck-sm90-only] always get that filter under racecheck: their general-path shapes would
# take longer than any limit there, and the general kernel is racechecked by the general-path cases.
set -uo pipefail
build=$1
parallel=${2:-16}
limit=${3:-200}
tools=${4:-racecheck,memcheck,synccheck,initcheck}
out=${OUT:-$PWD/gpu-logs}
logs=$(mktemp -d)
mkdir -p "$out"
"$build/tests/flashsci_gpu_tests" --list-test-names-only "${SANITIZE_CASES:-~[long]}" | sed '/^$/d' >"$logs/names"
"$build/tests/flashsci_gpu_tests" --list-test-names-only "[racecheck-sm90-only]" | sed '/^$/d' >"$logs/sm90_only"
echo "$(wc -l <"$logs/names") test cases × ${tools}, $parallel at a time, ${limit} s each"
export build limit logs RACECHECK_ARGS="${RACECHECK_ARGS:-}"
# Each line: index, tool, 1 for a [racecheck-sm90-only] case, name (Catch's ',', '[' and ']' escaped).
for tool in ${tools//,/ }; do
    awk -v tool="$tool" 'NR == FNR { only[$0] = 1; next } { print tool, ($0 in only) ? 1 : 0, $0 }' \
        "$logs/sm90_only" "$logs/names"
done | sed 's/[],[]/\\&/g' | nl -ba -w1 -s' ' | xargs -d '\n' -P "$parallel" -n1 sh -c '
    i=${1%% *}; rest=${1#* }; tool=${rest%% *}; rest=${rest#* }; sm90_only=${rest%% *}; name=${rest#* }; args=""
    if [ "$tool" = racecheck ]; then
        args=$RACECHECK_ARGS
        [ "$sm90_only" = 1 ] && args="--kernel-name kns=fwd_kernel"
    fi
    timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 3 $args "$build/tests/flashsci_gpu_tests" "$name" \
        >"$logs/$i.log" 2>&1
    echo "$? | $tool | $(grep -hE "(ERROR|RACECHECK) SUMMARY" "$logs/$i.log" | tail -1) | $(grep -hE "All tests passed|test cases:" "$logs/$i.log" | tail -1) | $name${args:+ ($args)}" \
        >"$logs/$i.result"
    [ -s "$logs/$i.log" ] && grep -qE "^0 " "$logs/$i.result" && rm "$logs/$i.log"' _
cat "$logs"/*.result | sort -t'|' -k2,2 -k5 >"$out/sanitize_cases.txt"
for f in "$logs"/*.log; do [ -e "$f" ] && { echo "== $(basename "$f")"; head -60 "$f"; }; done >"$out/sanitize_failures.log"
grep -c "^0 |" "$out/sanitize_cases.txt" | sed "s/\$/ of $(wc -l <"$out/sanitize_cases.txt") runs exited 0/"
grep -v "^0 |" "$out/sanitize_cases.txt" || true
