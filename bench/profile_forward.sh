#!/usr/bin/env bash
# Nsight Compute on one flashsci forward of one grid shape: where the Hopper kernel's time goes (tensor-pipe and
# issue utilisation, warp stall reasons), printed as text so that a device call returns it in its output.
#
#   FLASHSCI_LIBRARY=build-gpu/libflashsci.so bench/profile_forward.sh HEAD_DIM SEQLEN CAUSAL [DTYPE] [NCU ARGS...]
#   e.g. bench/profile_forward.sh 64 2048 0              (bf16, batch·seqlen = 16384, heads = 2048 / head_dim)
#
# The forward runs kWarmups times unprofiled, then once under ncu (--launch-skip); only the kernel the plan picked
# is profiled (fwd_kernel on the sm_90a path, not the general kernel's redo after it; else forward_kernel or
# decode_kernel), at the clocks the card runs
# (--clock-control none: ncu's default would lock them to base while profiling). Extra arguments go to ncu,
# e.g. --set full, or --section SourceCounters for the hottest SASS lines.
set -euo pipefail
head_dim=${1:?head_dim} seqlen=${2:?seqlen} causal=${3:?causal 0 or 1} dtype=${4:-bf16}
shift $(( $# < 4 ? $# : 4 ))
here=$(cd "$(dirname "$0")" && pwd)
warmups=3
sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats
          --section Occupancy --section LaunchStats)
driver=$(mktemp --suffix .py)
trap 'rm -f "$driver"' EXIT
cat >"$driver" <<'EOF'
import sys
import torch
import flashsci

head_dim, seqlen, causal, dtype, warmups = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], int(sys.argv[5])
tokens, hidden = 16384, 2048  # bench_attention.py's grid
batch, heads = max(1, tokens // seqlen), hidden // head_dim
dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
q, k, v = (torch.randn(batch, seqlen, heads, head_dim, dtype=dt, device="cuda") for _ in range(3))
fwd = flashsci.prepare(q, k, v, causal=causal)
if len(sys.argv) > 6:  # "name": which kernel the plan picked, nothing run
    sys.exit(print(fwd.plan.kernel_name))
for _ in range(warmups + 1):
    status = flashsci.lib().flashsci_forward(*fwd.args)
    if status != 0:
        sys.exit(f"flashsci_forward: status {status}")
torch.cuda.synchronize()
print(f"profiled: {fwd.plan.kernel_name}, batch {batch}, heads {heads}, seqlen {seqlen}, head_dim {head_dim}, "
      f"{'causal' if causal else 'non-causal'}, {dtype}")
EOF
export PYTHONPATH="$here/../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
# Only the picked kernel's launches count: the sm90 path's banded kernels are followed by the general kernel's redo.
case $(python3 "$driver" "$head_dim" "$seqlen" "$causal" "$dtype" "$warmups" name) in
    sm90_*) kernel=fwd_kernel ;;
    decode*) kernel=decode_kernel ;;
    *) kernel=forward_kernel ;;
esac
ncu --kernel-name "$kernel" --clock-control none --launch-skip "$warmups" --launch-count 1 "${sections[@]}" "$@" \
    python3 "$driver" "$head_dim" "$seqlen" "$causal" "$dtype" "$warmups"
