#!/bin/bash
# Build, check and time the sm_90a forward on the device machine; logs land in $OUT.
#   bench/sm90/run.sh [check|small|time|all] [harness time args, e.g. d=128 s=8192]
set -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sm90-out}
mkdir -p "$OUT" build/sm90
mode=${1:-all}
shift
flags="-std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Ikernels -Xptxas -v"
srcs="kernels/sm90/sm90.cu kernels/sm90/sm90_hd*.cu bench/sm90/harness.cu"
for f in $srcs; do
    nvcc $flags -c "$f" -o "build/sm90/$(basename "$f").o" > "build/sm90/$(basename "$f").log" 2>&1 &
done
wait
cat build/sm90/*.log > "$OUT/ptxas.log"
grep -E "error|spill stores|C75[0-9][0-9]" "$OUT/ptxas.log" | grep -v C7519 | sort | uniq -c
nvcc -O3 -gencode arch=compute_90a,code=sm_90a build/sm90/*.o -o build/sm90/harness || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/card.log"
if [[ $mode == check || $mode == all ]]; then
    timeout 120 build/sm90/harness check 2>&1 | tee "$OUT/check.log"
fi
if [[ $mode == small || $mode == all ]]; then
    timeout 300 compute-sanitizer --tool memcheck build/sm90/harness small 2>&1 | tail -15 | tee "$OUT/sanitize.log"
fi
if [[ $mode == time || $mode == all ]]; then
    timeout 200 build/sm90/harness time "$@" 2>&1 | tee "$OUT/time.log"
    timeout 200 python3 bench/sm90/sdpa.py "$@" 2>&1 | grep -v Warning | tee "$OUT/sdpa.log"
    python3 bench/sm90/compare.py "$OUT/time.log" "$OUT/sdpa.log" | tee "$OUT/table.log"
fi
