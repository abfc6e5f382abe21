#!/bin/sh
# CUDA compiler launcher (CMakeLists.txt): runs the compile command given as arguments and passes its output on
# without ptxas's C7519 info lines ("warpgroup.arrive is injected ... to allow use of registers in GMMA"), which no
# ptxas option silences and which ask for nothing. Every other line, and the command's exit status, pass through.
output=$("$@" 2>&1)
status=$?
if [ -n "$output" ]; then
    printf '%s\n' "$output" | grep -v '^ptxas info *: (C7519) warpgroup\.arrive is injected'
fi
exit $status
