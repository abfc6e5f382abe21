#!/usr/bin/env python3
"""CPU attention backward: libflashsci's CPU backward beside PyTorch's CPU scaled_dot_product_attention backward,
one process.

The CPU forward's grid (bench_cpu.py): batch 1, 8 heads, fp32 and bf16, head_dim 64/128, seqlen 512/2048, causal
and not, at 1 thread and at all threads (torch.set_num_threads and FLASHSCI_NUM_THREADS alike). Both run on the
same [batch, seqlen, heads, head_dim] tensors (SDPA gets transpose(1, 2) views): torch times
torch.autograd.grad(O, (Q, K, V), dO) through one retained SDPA forward, flashsci times flashsci_backward from
its own forward's O and LSE. Each cell times the two alternately, after a warm-up, and reports medians;
FLOPs = 2.5 × the forward's 4·b·h·s²·d, halved for causal. Each gradient set is checked against fp64 autograd
of SDPA on the same (rounded) inputs: the error columns are max over dQ, dK, dV of max |g - g64| / max |g64|.

    FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python python3 bench/bench_cpu_backward.py

FLASHSCI_CPU_ISA (reference | portable | avx2 | avx512) may force the library's path; the kernel column names
the path that ran.
"""

import argparse
import datetime
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import flashsci  # noqa: E402
from bench_cpu import (BATCH, DTYPES, FLASHSCI_DTYPES, HEADS, available_cores, cpu_model,  # noqa: E402
                       int_list, seconds_per_call)

BACKWARD_FLOPS_PER_FORWARD = 2.5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--head-dims", type=int_list, default=[64, 128])
    p.add_argument("--seqlens", type=int_list, default=[512, 2048])
    p.add_argument("--causal", type=int_list, default=[0, 1])
    p.add_argument("--threads", type=int_list, default=None, help="thread counts (default: 1 and all cores)")
    p.add_argument("--heads-kv", type=int, default=HEADS,
                   help=f"kv heads (default {HEADS}: multi-head; fewer: grouped, 1: multi-query, SDPA's enable_gqa)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, alternating (median reported)")
    p.add_argument("--min-seconds", type=float, default=0.3, help="a timed run loops until it lasts this long")
    return p.parse_args()


def gradient_error(grads, exact):
    """max over the three gradients of max |g - g64| / max |g64|"""
    return max(((g.double() - e).abs().max() / e.abs().max()).item() for g, e in zip(grads, exact))


def run_cell(dtype_name, head_dim, seqlen, causal, threads, args):
    torch.set_num_threads(threads)
    os.environ["FLASHSCI_NUM_THREADS"] = str(threads)
    dtype = DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(seqlen * 1000 + head_dim * 10 + causal)
    heads_kv = args.heads_kv
    q, k, v, dout = (torch.randn(BATCH, seqlen, heads, head_dim, generator=gen).to(dtype)
                     for heads in (HEADS, heads_kv, heads_kv, HEADS))
    gqa = {"enable_gqa": True} if heads_kv != HEADS else {}

    # flashsci: forward for O and LSE, then the timed backward.
    plan = flashsci.Plan("cpu").set_shape(BATCH, seqlen, seqlen, HEADS, heads_kv, head_dim)
    plan.set_dtype(FLASHSCI_DTYPES[dtype_name]).set_mask("causal" if causal else "none")
    out = torch.empty_like(q)
    lse = torch.empty(BATCH, HEADS, seqlen, dtype=torch.float32)
    plan.forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr())
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    pointers = [t.data_ptr() for t in (q, k, v, out, dout, lse, dq, dk, dv)]

    def run_flashsci():
        plan.backward(*pointers)

    # torch: one SDPA forward kept for its backward.
    leaves = [t.transpose(1, 2).detach().requires_grad_() for t in (q, k, v)]
    torch_out = F.scaled_dot_product_attention(*leaves, is_causal=bool(causal), **gqa)
    torch_dout = dout.transpose(1, 2)

    def run_torch():
        return torch.autograd.grad(torch_out, leaves, torch_dout, retain_graph=True)

    theirs_grads = [g.transpose(1, 2) for g in run_torch()]
    run_flashsci()
    exact_leaves = [t.transpose(1, 2).double().requires_grad_() for t in (q, k, v)]
    exact_out = F.scaled_dot_product_attention(*exact_leaves, is_causal=bool(causal), **gqa)
    exact = [g.transpose(1, 2) for g in torch.autograd.grad(exact_out, exact_leaves, torch_dout.double())]
    errors = gradient_error((dq, dk, dv), exact), gradient_error(theirs_grads, exact)

    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(seconds_per_call(run_flashsci, args.min_seconds, time.perf_counter))
        theirs.append(seconds_per_call(run_torch, args.min_seconds, time.perf_counter))
    flops = BACKWARD_FLOPS_PER_FORWARD * 4 * BATCH * HEADS * seqlen * seqlen * head_dim / (2 if causal else 1)
    ours_gflops = flops / statistics.median(ours) / 1e9
    theirs_gflops = flops / statistics.median(theirs) / 1e9
    kernel = plan.kernel_name
    plan.close()
    return ours_gflops, theirs_gflops, errors, kernel


def main():
    args = parse_args()
    cores = available_cores()
    thread_counts = args.threads or sorted({1, cores})
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, CPU: {cpu_model()}, "
          f"{cores} cores available, torch {torch.__version__} (CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}), libflashsci {flashsci.version_string()}")
    print("# backward only; flashsci and torch columns: GFLOP/s; ratio = flashsci/torch; fs-fp64, tc-fp64 = max over "
          "dQ, dK, dV of max |g - g_fp64| / max |g_fp64| against fp64 autograd on the same inputs")
    print(f"# load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other processes share these cores)")
    print(f"# batch {BATCH}, heads {HEADS} (kv heads {args.heads_kv}); GFLOP/s = 2.5·4·b·h·s²·d (halved causal) / median wall time "
          f"of {args.repeats} alternating runs of >= {args.min_seconds} s each")
    header = f"{'dtype':5} {'hd':>4} {'seqlen':>6} {'causal':>6} {'threads':>7} {'kernel':>20} " \
             f"{'flashsci':>9} {'torch':>9} {'ratio':>6} {'fs-fp64':>9} {'tc-fp64':>9}"
    print(header)
    print("-" * len(header))
    worst = None
    for threads in thread_counts:
        for dtype_name in args.dtypes.split(","):
            for head_dim in args.head_dims:
                for seqlen in args.seqlens:
                    for causal in args.causal:
                        ours, theirs, (ours_fp64, theirs_fp64), kernel = run_cell(
                            dtype_name, head_dim, seqlen, causal, threads, args)
                        ratio = ours / theirs
                        worst = ratio if worst is None else min(worst, ratio)
                        print(f"{dtype_name:5} {head_dim:4} {seqlen:6} {causal:6} {threads:7} {kernel:>20} "
                              f"{ours:9.1f} {theirs:9.1f} {ratio:6.2f} {ours_fp64:9.1e} {theirs_fp64:9.1e}",
                              flush=True)
    print(f"# lowest ratio flashsci/torch: {worst:.2f}")


if __name__ == "__main__":
    main()
