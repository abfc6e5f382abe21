#!/usr/bin/env bash
# A/B on one GPU in one device call: builds this tree and another source tree, then runs the same benchmark
# on both libraries, one after the other, so their ratio is free of card-to-card and run-to-run drift.
# The other tree is plain sources (the device copy has no git history), e.g. made here with
#   mkdir -p .dev/old && git archive REF | tar -x -C .dev/old     (.dev/ is git-ignored; carry it)
# Usage: scripts/ab_bench.sh OLD_TREE [bench_attention.py or bench_features.py arguments...]
#   BENCH=bench_features.py selects the features benchmark; CMAKE_ARGS is passed to both configures
#   (e.g. -DFLASHSCI_SM90_HEAD_DIMS=128 to build only what the benchmark runs). Logs and CSVs go to $OUT.
#   AB_ROUNDS=N runs N rounds, alternating which side goes first, and prints per-shape medians and the
#   spread of new ÷ old over the rounds (bench/ab_summary.py): differences of a few % need N >= 3.
set -uo pipefail
old=$(realpath "$1")
shift
out=${OUT:-$PWD/gpu-logs}
mkdir -p "$out"
prefix_args=()
[ -d .deps/usr ] && prefix_args=(-DCMAKE_PREFIX_PATH="$PWD/.deps/usr")
build() {
    cmake -S "$1" -B "$2" -G Ninja "${prefix_args[@]}" -DFLASHSCI_BUILD_TESTS=OFF -DFLASHSCI_BUILD_EXAMPLES=OFF \
        ${CMAKE_ARGS:-} && cmake --build "$2" -j"$(( $(nproc) / 2 ))"
}
start=$(date +%s)
build . /tmp/ab-new >"$out/ab_build_new.log" 2>&1 &
build "$old" /tmp/ab-old >"$out/ab_build_old.log" 2>&1
old_status=$?
wait $! || { tail -20 "$out/ab_build_new.log"; exit 1; }
[ $old_status -eq 0 ] || { tail -20 "$out/ab_build_old.log"; exit 1; }
echo "both built in $(($(date +%s) - start)) s"
rounds=${AB_ROUNDS:-1}
for round in $(seq 1 "$rounds"); do
    order="new old"
    [ $((round % 2)) -eq 0 ] && order="old new"
    for side in $order; do
        echo "== $side (round $round of $rounds)"
        FLASHSCI_LIBRARY=/tmp/ab-$side/libflashsci.so PYTHONPATH="$PWD/bindings/python" \
            python3 "bench/${BENCH:-bench_attention.py}" --out "$out/ab_${side}_$round.csv" "$@" 2>&1 | grep -v "^#"
    done
done
echo "== summary"
python3 bench/ab_summary.py "$out"
