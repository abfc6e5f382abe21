#!/usr/bin/env bash
# Builds libflashsci with its tests and runs them with ctest. GPU tests report
# "skipped" where no GPU exists. The Python binding's tests run too when
# pytest is installed.
#
# Usage: ./scripts/test.sh [-DNAME=VALUE ...]
# Environment: BUILD_DIR (default build/), CMAKE_ARGS, CMAKE_PREFIX_PATH, FLASHSCI_NO_APT=1.
# As root on Debian/Ubuntu it first apt-installs what is missing of cmake, g++,
# ninja-build and catch2, naming them first (FLASHSCI_NO_APT=1: never).
set -euo pipefail
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
parse_script_args "$@"

install_prerequisites tests
ensure_cmake
have_catch2 || echo "note: Catch2 (v2) not found by this script; CMake will look for it" >&2
configure_and_build -DFLASHSCI_BUILD_TESTS=ON -DFLASHSCI_BUILD_EXAMPLES=ON --

say "Running the tests"
ctest --test-dir "$BUILD_DIR" --output-on-failure

if command -v python3 >/dev/null 2>&1 && python3 -c 'import pytest' >/dev/null 2>&1; then
    say "Running the Python binding tests"
    FLASHSCI_LIBRARY="$BUILD_DIR/libflashsci.so" python3 -m pytest -q "$ROOT/bindings/python/tests"
else
    say "Python binding tests skipped (no python3 with pytest)"
fi
