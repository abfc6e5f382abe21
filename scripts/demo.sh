#!/usr/bin/env bash
# Builds libflashsci and runs the demo: one attention forward on the GPU when
# there is one (else on the CPU), checked against an fp64 reference and timed.
#
# Usage: ./scripts/demo.sh [-DNAME=VALUE ...] [-- demo arguments]
#   e.g. ./scripts/demo.sh -- --causal --dtype fp16
# Environment: BUILD_DIR (default build/), CMAKE_ARGS, CMAKE_PREFIX_PATH, FLASHSCI_NO_APT=1.
# As root on Debian/Ubuntu it first apt-installs what is missing of cmake, g++
# and ninja-build, naming them first (FLASHSCI_NO_APT=1: never). The tests are
# built too when Catch2 is installed; the demo does not need it.
set -euo pipefail
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

cmake_args=() demo_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; demo_args=("$@"); break; fi
    cmake_args+=("$1"); shift
done
parse_script_args "${cmake_args[@]}"

install_prerequisites build
ensure_cmake
extra=()
have_catch2 || extra+=(-DFLASHSCI_BUILD_TESTS=OFF)
configure_and_build -DFLASHSCI_BUILD_EXAMPLES=ON "${extra[@]}" -- flashsci_demo

say "Running the demo"
"$BUILD_DIR/examples/flashsci_demo" "${demo_args[@]}"
