# shellcheck shell=bash
# Shared by demo.sh and test.sh (sourced, not run): installs what a fresh
# Debian/Ubuntu machine lacks, then configures and builds libflashsci.
#
# Environment:
#   BUILD_DIR          build directory (default: build/ in the repository)
#   CMAKE_ARGS         extra arguments for the CMake configure step (word-split)
#   CMAKE_PREFIX_PATH  passed on to CMake as -DCMAKE_PREFIX_PATH
#   FLASHSCI_NO_APT=1  never run apt-get
# Arguments of the calling script that start with -D are passed to CMake too.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
JOBS=$(nproc 2>/dev/null || echo 2)
MIN_CMAKE=3.25

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# nvcc usually lives outside PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi

# True when the installed cmake is at least $MIN_CMAKE.
cmake_recent() {
    command -v cmake >/dev/null 2>&1 || return 1
    local v
    v=$(cmake --version | awk 'NR == 1 {print $3}')
    [ "$(printf '%s\n%s\n' "$MIN_CMAKE" "$v" | sort -V | head -n 1)" = "$MIN_CMAKE" ]
}

have_catch2() {
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' catch2 2>/dev/null | grep -q 'install ok installed' && return 0
    fi
    local d
    for d in /usr/lib/cmake/Catch2 /usr/local/lib/cmake/Catch2 /usr/share/cmake/Catch2 /usr/local/share/cmake/Catch2; do
        [ -f "$d/Catch2Config.cmake" ] && return 0
    done
    return 1
}

# Installs the missing build tools with apt-get when we are root and it exists, after saying which and why:
# `install_prerequisites build`: a compiler, CMake and a build tool; `install_prerequisites tests`: Catch2 too.
install_prerequisites() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v ninja >/dev/null 2>&1 || command -v make >/dev/null 2>&1 || missing+=(ninja-build)
    if [ "${1:-}" = tests ]; then
        have_catch2 || missing+=(catch2)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${FLASHSCI_NO_APT:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "Installing with apt-get (missing; FLASHSCI_NO_APT=1 skips this): ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        printf 'note: missing %s; install them with: sudo apt-get install %s\n' "${missing[*]}" "${missing[*]}" >&2
    fi
}

# Falls back to CMake from PyPI (in .deps/) where the system one is older than $MIN_CMAKE.
ensure_cmake() {
    cmake_recent && return 0
    if [ -x "$ROOT/.deps/cmake/bin/cmake" ]; then
        export PATH="$ROOT/.deps/cmake/bin:$PATH"
        cmake_recent && return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "CMake >= $MIN_CMAKE is needed (found: $(cmake --version 2>/dev/null | head -n 1 || echo none))"
    say "CMake >= $MIN_CMAKE not found; installing it from PyPI (pip install cmake) into .deps/cmake"
    if ! { python3 -m venv "$ROOT/.deps/cmake" && "$ROOT/.deps/cmake/bin/pip" install -q "cmake>=$MIN_CMAKE"; }; then
        die "CMake >= $MIN_CMAKE is needed; install it (e.g. pip install cmake) and retry"
    fi
    export PATH="$ROOT/.deps/cmake/bin:$PATH"
    cmake_recent || die "CMake >= $MIN_CMAKE is needed"
}

# configure_and_build <cmake configure args...> -- <build targets...>
configure_and_build() {
    local args=() targets=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    targets=("$@")

    # A build directory keeps its generator; a new one gets Ninja when available.
    if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
        args+=(-G Ninja)
    fi
    if command -v nvcc >/dev/null 2>&1; then
        args+=(-DFLASHSCI_CUDA=ON "-DCMAKE_CUDA_COMPILER=$(command -v nvcc)")
    else
        args+=(-DFLASHSCI_CUDA=OFF)
    fi
    [ -n "${CMAKE_PREFIX_PATH:-}" ] && args+=("-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH")
    local extra=()
    read -r -a extra <<<"${CMAKE_ARGS:-}"
    args+=("${extra[@]}" "${SCRIPT_CMAKE_ARGS[@]}")

    say "Configuring in $BUILD_DIR (nvcc: $(command -v nvcc || echo 'not found, CPU backend only'))"
    cmake -S "$ROOT" -B "$BUILD_DIR" "${args[@]}"
    say "Building with $JOBS jobs"
    local target_args=()
    [ ${#targets[@]} -gt 0 ] && target_args=(--target "${targets[@]}")
    # ptxas reports (as info: C7510, C7512, C7515, C7520, ... "wgmma.mma_async instructions are serialized") a
    # kernel whose wgmmas it had to serialise: correct, but the fast path then runs at a fraction of its speed, so
    # the build fails on it (for the files this build compiled), whatever the code.
    local log="$BUILD_DIR/build-output.log"
    cmake --build "$BUILD_DIR" --parallel "$JOBS" "${target_args[@]}" 2>&1 | tee "$log"
    if grep -E "wgmma.mma_async instructions are serialized" "$log" >&2; then
        echo "error: ptxas serialised the wgmmas of the kernel(s) above; see docs/sm90-kernel.md (ptxas)" >&2
        return 1
    fi
}

# -D arguments of the calling script go to CMake; anything else is an error.
SCRIPT_CMAKE_ARGS=()
parse_script_args() {
    local a
    for a in "$@"; do
        case "$a" in
            -D*) SCRIPT_CMAKE_ARGS+=("$a") ;;
            -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
            *) die "unknown argument '$a' (only -DNAME=VALUE arguments for CMake are accepted)" ;;
        esac
    done
}
