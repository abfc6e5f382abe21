#!/usr/bin/env python3
"""Summarise an A/B of two libraries benchmarked in alternating rounds (scripts/ab_bench.sh, AB_ROUNDS).

Reads the CSVs of bench_attention.py or bench_features.py written as ab_new_<round>.csv and ab_old_<round>.csv
in a folder and prints, per shape, the medians over rounds: TFLOP/s new / old / CUDNN, new ÷ CUDNN and new ÷ old
(the median of each round's ratio, so a drift that moves both sides of a round cancels), and the spread of
new ÷ old (min–max over rounds), which says whether a difference is larger than the noise.

  python3 bench/ab_summary.py OUT_DIR
"""
import csv
import glob
import os
import statistics
import sys

# Columns that identify a shape: bench_attention.py's, and bench_features.py's feature row.
SHAPE_COLUMNS = ("dtype", "head_dim", "causal", "batch", "seqlen", "seqlen_q", "heads_q", "heads_kv", "feature")
# (flashsci TFLOP/s, CUDNN TFLOP/s) columns of each benchmark.
RATE_COLUMNS = (("tflops_flashsci", "tflops_CUDNN"), ("tflops", "tflops_cudnn_plain"))


def read_rounds(folder, side):
    paths = sorted(glob.glob(os.path.join(folder, f"ab_{side}_*.csv")),
                   key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
    return [list(csv.DictReader(open(p, newline=""))) for p in paths]


def rate_columns(row):
    for ours, cudnn in RATE_COLUMNS:
        if ours in row:
            return ours, cudnn
    sys.exit(f"ab_summary: no TFLOP/s column among {sorted(row)}")


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    new, old = read_rounds(folder, "new"), read_rounds(folder, "old")
    if not new or len(new) != len(old):
        sys.exit(f"ab_summary: {len(new)} new and {len(old)} old rounds in {folder}")
    ours, cudnn = rate_columns(new[0][0])
    key = lambda row: tuple(row.get(c, "") for c in SHAPE_COLUMNS)
    shapes = [key(row) for row in new[0]]
    per_shape = {k: {"new": [], "old": [], "cudnn": [], "ratio": []} for k in shapes}
    for new_rows, old_rows in zip(new, old):
        old_by_key = {key(row): row for row in old_rows}
        for row in new_rows:
            k, other = key(row), old_by_key.get(key(row))
            a, b = number(row.get(ours)), number(other.get(ours)) if other else None
            if k not in per_shape or a is None or b is None:
                continue
            s = per_shape[k]
            s["new"].append(a), s["old"].append(b), s["ratio"].append(a / b)
            c = number(row.get(cudnn))
            if c:
                s["cudnn"].append(c)

    names = [c for c in SHAPE_COLUMNS if any(k[SHAPE_COLUMNS.index(c)] for k in shapes)]
    print(f"{len(new)} rounds; medians. new/old spread: min-max of the rounds' new ÷ old")
    print(" ".join(f"{n:>8}" for n in names) + " |   new    old  CUDNN | new÷CUDNN new÷old  spread")
    for k in shapes:
        s = per_shape[k]
        if not s["ratio"]:
            continue
        m = statistics.median
        cudnn_rate = m(s["cudnn"]) if s["cudnn"] else None
        vs_cudnn = f"{m(s['new']) / cudnn_rate:9.3f}" if cudnn_rate else f"{'n/a':>9}"
        cells = " ".join(f"{k[SHAPE_COLUMNS.index(n)]:>8}" for n in names)
        print(f"{cells} | {m(s['new']):5.0f}  {m(s['old']):5.0f}  {cudnn_rate or 0:5.0f} | {vs_cudnn} "
              f"{m(s['ratio']):7.3f}  {min(s['ratio']):.2f}-{max(s['ratio']):.2f}")


if __name__ == "__main__":
    main()
