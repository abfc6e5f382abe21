"""Joins the harness's TIME lines with sdpa.py's SDPA lines: one table of TFLOP/s and the ratio to cuDNN."""
import re
import sys

ours, sdpa = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"TIME d=(\d+) causal=(\d) s=(\d+) (\w+) ms=\S+ tflops=(\S+)", line)
    if m:
        ours[m.groups()[:3]] = float(m.group(5))
for line in open(sys.argv[2]):
    m = re.match(r"SDPA d=(\d+) causal=(\d) s=(\d+) (\w+) cudnn=(\S+) flash=(\S+)", line)
    if m:
        sdpa[m.groups()[:3]] = (float(m.group(5)), float(m.group(6)))
print(f"{'d':>4} {'causal':>6} {'seqlen':>6} {'sm90':>7} {'cudnn':>7} {'fa2':>7} {'ratio':>6}")
for key in sorted(ours, key=lambda k: (int(k[0]), int(k[1]), int(k[2]))):
    c, f = sdpa.get(key, (float("nan"), float("nan")))
    print(f"{key[0]:>4} {key[1]:>6} {key[2]:>6} {ours[key]:7.1f} {c:7.1f} {f:7.1f} {ours[key] / c:6.3f}")
