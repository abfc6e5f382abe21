#!/usr/bin/env python3
"""CPU forward attention: libflashsci's CPU backend beside PyTorch's CPU scaled_dot_product_attention, one process.

The DESIGN §6 CPU grid: batch 1, 8 heads, fp32 and bf16, head_dim 64/128, seqlen 512/2048, causal and not,
at 1 thread and at all threads (torch.set_num_threads and FLASHSCI_NUM_THREADS alike). Both run on the same
[batch, seqlen, heads, head_dim] tensors (SDPA gets transpose(1, 2) views). Each cell times the two
alternately, after a warm-up, and reports medians; FLOPs = 4·b·h·s²·d, halved for causal. flashsci's
output is checked against SDPA's on every cell (max |diff| / max |SDPA|), and both against fp64 attention.

    FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python python3 bench/bench_cpu.py

FLASHSCI_CPU_ISA (reference | portable | avx2 | avx512) may force the library's path; the kernel column
names the path that ran.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import flashsci  # noqa: E402

BATCH, HEADS = 1, 8
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FLASHSCI_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--head-dims", type=int_list, default=[64, 128])
    p.add_argument("--seqlens", type=int_list, default=[512, 2048])
    p.add_argument("--causal", type=int_list, default=[0, 1])
    p.add_argument("--threads", type=int_list, default=None, help="thread counts (default: 1 and all cores)")
    p.add_argument("--heads-kv", type=int, default=HEADS,
                   help=f"kv heads (default {HEADS}: multi-head; fewer: grouped, 1: multi-query, SDPA's enable_gqa)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs of each, alternating (median reported)")
    p.add_argument("--min-seconds", type=float, default=0.2, help="a timed run loops until it lasts this long")
    p.add_argument("--clock", choices=["wall", "thread"], default="wall",
                   help="thread: the calling thread's CPU time instead of wall time, for 1-thread runs on a "
                        "machine other processes load (both libraries then compute on the calling thread)")
    return p.parse_args()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def seconds_per_call(fn, min_seconds, clock):
    """One timed run: fn repeated until min_seconds pass on `clock`; the mean time of a call."""
    calls, start = 0, clock()
    while True:
        fn()
        calls += 1
        elapsed = clock() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def relative_error(x, reference):
    """max |x - reference| / max |reference|"""
    return ((x.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


def run_cell(dtype_name, head_dim, seqlen, causal, threads, args):
    torch.set_num_threads(threads)
    os.environ["FLASHSCI_NUM_THREADS"] = str(threads)
    dtype = DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(seqlen * 1000 + head_dim * 10 + causal)
    q, k, v = (torch.randn(BATCH, seqlen, heads, head_dim, generator=gen).to(dtype)
               for heads in (HEADS, args.heads_kv, args.heads_kv))
    gqa = {"enable_gqa": True} if args.heads_kv != HEADS else {}
    out = torch.empty_like(q)
    plan = flashsci.Plan("cpu").set_shape(BATCH, seqlen, seqlen, HEADS, args.heads_kv, head_dim)
    plan.set_dtype(FLASHSCI_DTYPES[dtype_name]).set_mask("causal" if causal else "none")
    pointers = [t.data_ptr() for t in (q, k, v, out)]

    def run_flashsci():
        plan.forward(*pointers)

    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def run_torch():
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=bool(causal), **gqa)

    reference = run_torch().transpose(1, 2)
    run_flashsci()
    error = relative_error(out, reference)
    # Both against fp64 attention on the same (rounded) inputs.
    exact = F.scaled_dot_product_attention(qt.double(), kt.double(), vt.double(), is_causal=bool(causal),
                                           **gqa).transpose(1, 2)
    errors_fp64 = relative_error(out, exact), relative_error(reference, exact)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(seconds_per_call(run_flashsci, args.min_seconds, args.clock_function))
        theirs.append(seconds_per_call(run_torch, args.min_seconds, args.clock_function))
    flops = 4 * BATCH * HEADS * seqlen * seqlen * head_dim / (2 if causal else 1)
    ours_gflops = flops / statistics.median(ours) / 1e9
    theirs_gflops = flops / statistics.median(theirs) / 1e9
    kernel = plan.kernel_name
    plan.close()
    return ours_gflops, theirs_gflops, error, errors_fp64, kernel


def main():
    args = parse_args()
    cores = available_cores()
    thread_counts = args.threads or sorted({1, cores})
    if args.clock == "thread" and thread_counts != [1]:
        sys.exit("--clock thread measures the calling thread only: use it with --threads 1")
    args.clock_function = time.perf_counter if args.clock == "wall" else time.thread_time
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, CPU: {cpu_model()}, "
          f"{cores} cores available, torch {torch.__version__} (CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}), libflashsci {flashsci.version_string()}")
    print("# flashsci and torch columns: GFLOP/s; ratio = flashsci/torch; vs torch = max |O_flashsci - O_torch| / "
          "max |O_torch|; fs-fp64, tc-fp64 = the same for each against fp64 attention on the same inputs")
    print(f"# load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other processes share these cores)")
    print(f"# batch {BATCH}, heads {HEADS} (kv heads {args.heads_kv}); GFLOP/s = 4·b·h·s²·d (halved causal) / median {args.clock} time "
          f"of {args.repeats} alternating runs of >= {args.min_seconds} s each")
    header = f"{'dtype':5} {'hd':>4} {'seqlen':>6} {'causal':>6} {'threads':>7} {'kernel':>12} " \
             f"{'flashsci':>9} {'torch':>9} {'ratio':>6} {'vs torch':>9} {'fs-fp64':>9} {'tc-fp64':>9}"
    print(header)
    print("-" * len(header))
    worst = None
    for threads in thread_counts:
        for dtype_name in args.dtypes.split(","):
            for head_dim in args.head_dims:
                for seqlen in args.seqlens:
                    for causal in args.causal:
                        ours, theirs, error, (ours_fp64, theirs_fp64), kernel = run_cell(
                            dtype_name, head_dim, seqlen, causal, threads, args)
                        ratio = ours / theirs
                        worst = ratio if worst is None else min(worst, ratio)
                        print(f"{dtype_name:5} {head_dim:4} {seqlen:6} {causal:6} {threads:7} {kernel:>12} "
                              f"{ours:9.1f} {theirs:9.1f} {ratio:6.2f} {error:9.1e} {ours_fp64:9.1e} {theirs_fp64:9.1e}", flush=True)
    print(f"# lowest ratio flashsci/torch: {worst:.2f}")


if __name__ == "__main__":
    main()
