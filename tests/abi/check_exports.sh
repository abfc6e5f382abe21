#!/bin/sh
# Usage: check_exports.sh libflashsci.so — fails if the library exports anything outside
# flashsci_*, misses a core function, or needs the CUDA driver or shared runtime to load.
set -eu
lib=$1
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sed 's/@.*//' | sort -u)
status=0
stray=$(printf '%s\n' "$exported" | grep -v '^flashsci_' || true)
if [ -n "$stray" ]; then
    echo "exported outside flashsci_*:"; printf '  %s\n' $stray; status=1
fi
for f in flashsci_version flashsci_version_string flashsci_status_string flashsci_last_error \
         flashsci_plan_create flashsci_plan_destroy flashsci_plan_get_backend flashsci_plan_set_shape \
         flashsci_plan_set_dtype flashsci_plan_set_mask flashsci_plan_set_softmax_scale \
         flashsci_plan_set_strides flashsci_plan_get_workspace_size flashsci_forward; do
    printf '%s\n' "$exported" | grep -qx "$f" || { echo "missing export: $f"; status=1; }
done
needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $NF}')
if printf '%s\n' "$needed" | grep -Eq 'libcuda\.|libcudart'; then
    echo "links the CUDA driver or shared runtime:"; printf '  %s\n' $needed; status=1
fi
soname=$(readelf -d "$lib" | awk '/SONAME/ {print $NF}')
case "$soname" in
    "[libflashsci.so.0]") ;;
    *) echo "unexpected soname $soname"; status=1 ;;
esac
[ $status -eq 0 ] && echo "exports: $(printf '%s\n' "$exported" | wc -l) flashsci_* symbols, soname $soname, no CUDA runtime/driver dependency"
exit $status
