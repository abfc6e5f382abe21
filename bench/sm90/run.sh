#!/bin/bash
# Build, check and time the sm_90a forward on the device machine; logs land in $OUT.
#   bench/sm90/run.sh [check|small|time|all] [harness time args, e.g. d=128 s=8192]
# TILES="128,false,176,2,1,true,240;..." builds a variant whose kTiles rows (head_dim, causal, ...) are replaced;
# PATCH='python statements' edits that variant's copy of kernels/sm90 (variable k: its path) for A/B runs.
set -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sm90-out}
mode=${1:-all}
shift
tag=${TILES:+variant}${PATCH:+variant}
tag=${tag:0:7}
tag=${tag:-base}
build=build/sm90-$tag
mkdir -p "$OUT" "$build"
kdir=kernels
if [[ $tag == variant ]]; then
    rm -rf "$build/kernels" && mkdir -p "$build/kernels" && cp -r kernels/sm90 kernels/common "$build/kernels/"
    python3 - "$build/kernels/sm90/tiles.h" "$TILES" <<'PY' || exit 1
import re, sys
path, rows = sys.argv[1], sys.argv[2]
text = open(path).read()
for row in filter(None, rows.split(";")):
    d, c = row.split(",")[:2]
    text, n = re.subn(r"\{%s, %s, [^}]*\}" % (d, c), "{%s}" % row.replace(",", ", "), text)
    assert n == 1, row
open(path, "w").write(text)
print("tiles:", re.findall(r"\{\d+, (?:true|false), [^}]*\}", text))
PY
    k=$build/kernels/sm90 python3 -c "import os; k = os.environ['k']; $PATCH" || exit 1
    kdir=$build/kernels
fi
flags="-std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -I$kdir -Isrc -I$build/gen -Xptxas -v"
log=$OUT/$tag.log
if [[ ! -x $build/harness || -n $(find $kdir/sm90 bench/sm90/harness.cu -newer $build/harness) ]]; then
    # The instances' .cu files, generated from the tile table as the library's CMake build does.
    rm -rf "$build/gen" "$build"/*.o
    cmake -D FLASHSCI_SM90_KERNEL_DIR="$kdir/sm90" -D FLASHSCI_SM90_OUT_DIR="$build/gen" -P cmake/sm90_instances.cmake || exit 1
    for f in $kdir/sm90/sm90.cu $build/gen/sm90_hd*.cu bench/sm90/harness.cu; do
        nvcc $flags -c "$f" -o "$build/$(basename "$f").o" > "$build/$(basename "$f").log" 2>&1 &
    done
    wait
    cat $build/*.log | grep -E "error|spill stores|C75[0-9][0-9]" | grep -v C7519 | sort | uniq -c | tee -a "$log"
    nvcc -O3 -gencode arch=compute_90a,code=sm_90a $build/*.o -o $build/harness || exit 1
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader | tee -a "$log"
if [[ $mode == check || $mode == all ]]; then
    timeout 120 $build/harness check 2>&1 | tee -a "$log" | grep -v " ok$"
fi
if [[ $mode == small || $mode == all ]]; then
    timeout 300 compute-sanitizer --tool memcheck $build/harness small 2>&1 | tail -6 | tee -a "$log"
fi
if [[ $mode == time || $mode == all ]]; then
    timeout 200 $build/harness time "$@" > "$build/time.log" 2>&1
    cat "$build/time.log" >> "$log"
    if [[ ! -s $OUT/sdpa.log ]]; then
        timeout 200 python3 bench/sm90/sdpa.py "$@" 2>&1 | grep -v Warning > "$OUT/sdpa.log"
    fi
    python3 bench/sm90/compare.py "$build/time.log" "$OUT/sdpa.log" | tee -a "$log"
fi
