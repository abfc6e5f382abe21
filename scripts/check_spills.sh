#!/usr/bin/env bash
# Builds the CUDA kernels with ptxas's report (FLASHSCI_PTXAS_VERBOSE=ON, i.e. -Xptxas -v), prints every kernel's
# registers and spill bytes per architecture, and fails when any kernel or device function spills.
#
# Usage: ./scripts/check_spills.sh [-DNAME=VALUE ...]     e.g. -DFLASHSCI_CUDA_ARCHITECTURES=90a
# Environment: BUILD_DIR (default build-spills/), JOBS (default: all cores).
# The build starts clean each time, so every kernel is compiled and reported.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-spills}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi
command -v nvcc >/dev/null 2>&1 || { echo "error: nvcc not found: the spill check compiles the CUDA kernels" >&2; exit 1; }
generator=()
[ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

mkdir -p "$build"
echo "==> Configuring in $build"
cmake -S "$root" -B "$build" "${generator[@]}" -DFLASHSCI_CUDA=ON -DFLASHSCI_PTXAS_VERBOSE=ON \
    -DFLASHSCI_BUILD_TESTS=OFF -DFLASHSCI_BUILD_EXAMPLES=OFF "$@" >"$build/check_spills.configure.log" 2>&1 ||
    { cat "$build/check_spills.configure.log" >&2; exit 1; }
echo "==> Building libflashsci with ptxas -v ($jobs jobs; the log: $build/ptxas.log)"
cmake --build "$build" --target flashsci --clean-first --parallel "$jobs" >"$build/ptxas.log" 2>&1 ||
    { tail -n 40 "$build/ptxas.log" >&2; exit 1; }

# ptxas -v, per function: "Compiling entry function 'NAME' for 'sm_XX'", then "Function properties for NAME" and
# "N bytes stack frame, S bytes spill stores, L bytes spill loads", then (kernels) "Used R registers, ...".
table=$(awk '
    /Compiling entry function/ { match($0, /function .[^'\'']+/); name = substr($0, RSTART + 10, RLENGTH - 10)
                                 match($0, /for .sm_[0-9a-z]+/); arch = substr($0, RSTART + 5, RLENGTH - 5); next }
    /Function properties for/  { current = $NF; next }
    /bytes spill stores/       { key = arch "\t" current; stores[key] = $5; loads[key] = $9; seen[key] = 1; next }
    /Used [0-9]+ registers/    { for (i = 1; i <= NF; i++) if ($i == "Used") regs[arch "\t" name] = $(i + 1); next }
    END { for (key in seen) printf "%s\t%s\t%s\t%s\n", key, (key in regs) ? regs[key] : "-", stores[key], loads[key] }
' "$build/ptxas.log" | sort -u)
[ -n "$table" ] || { echo "error: no ptxas report in $build/ptxas.log" >&2; exit 1; }

# The demangled name without its parameter list.
demangle() { if command -v c++filt >/dev/null 2>&1; then c++filt; else cat; fi; }
short_name() { printf '%s\n' "$1" | demangle | sed 's/(anonymous namespace)/{anonymous}/g; s/(.*//'; }

# regs: what ptxas allocates at launch (the sm_90a kernels' consumer warps raise theirs with setmaxnreg).
row() { printf '%-7s %5s %7s %7s  %s\n' "$@"; }
row arch regs stores loads function
spills=()
total=0
while IFS=$'\t' read -r arch name regs stores loads; do
    total=$((total + 1))
    line=$(row "$arch" "$regs" "$stores" "$loads" "$(short_name "$name")")
    printf '%s\n' "$line"
    if [ "$stores" -gt 0 ] || [ "$loads" -gt 0 ]; then spills+=("$line"); fi
done <<<"$table"
echo "$total functions; spill stores and loads in bytes"
if [ ${#spills[@]} -gt 0 ]; then
    echo
    echo "error: ${#spills[@]} functions spill registers to local memory:" >&2
    printf '%s\n' "${spills[@]}" >&2
    exit 1
fi
echo "no spills"
