#!/bin/sh
# The objects built with AVX2 or AVX-512 flags (src/cpu/fast_avx*.cpp) must define no weak or unique symbols: an
# inline function or template instance emitted there could be the copy the linker keeps for the whole library,
# which would then need that instruction set on every CPU. Each defines exactly its one entry point.
# Usage: check_isa_objects.sh OBJECT...
status=0
for object in "$@"; do
  case "$object" in *fast_avx*) ;; *) continue ;; esac
  shared=$(nm --defined-only "$object" | awk '$2 ~ /^[WVu]$/')
  if [ -n "$shared" ]; then
    echo "$object defines weak or unique symbols:"; echo "$shared"; status=1
  fi
  globals=$(nm --defined-only -C "$object" | awk '$2 ~ /^[TDB]$/' | grep -vc 'flashsci::cpu::fast_block_avx')
  if [ "$globals" -ne 0 ]; then
    echo "$object defines global symbols besides its fast_block_avx* entry point"; status=1
  fi
done
exit $status
