#!/usr/bin/env python3
"""Backward attention: libflashsci beside PyTorch SDPA (FLASH and CUDNN) in one run.

The grid of bench_attention.py (batch·seqlen = 16384 tokens, hidden 2048, heads = 2048/head_dim), bf16/fp16.
Each backend runs its forward once on the same [batch, seqlen, heads, head_dim] tensors; the timed region is the
backward alone, torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), a median of
triton.testing.do_bench(warmup=25, rep=100). FLOPs of the backward = 2.5 × the forward's (4·b·h·s²·d, halved
for causal). flashsci's dq, dk, dv are checked against CUDNN's (else FLASH's) as max |err| over max |ref|.

    FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python \\
        python3 bench/bench_backward.py --seqlens 2048,8192 --head-dims 128 --dtypes bf16

--deterministic runs flashsci's deterministic backward. --out writes one CSV row per shape.
"""

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))

from bench_attention import HIDDEN, TOKENS, environment, first_line, fmt, int_list  # noqa: E402

BACKWARD_FLOPS_PER_FORWARD_FLOP = 2.5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqlens", type=int_list, default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--head-dims", type=int_list, default=[64, 128, 256])
    p.add_argument("--dtypes", default="bf16,fp16")
    p.add_argument("--causal", choices=["0", "1", "both"], default="both")
    p.add_argument("--tokens", type=int, default=TOKENS)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--out", default=os.path.join(os.environ["OUT"], "bench_backward.csv") if os.environ.get("OUT")
                   else None)
    args = p.parse_args()
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    return args


def main():
    args = parse_args()
    import torch
    import torch.nn.functional as F
    import triton.testing
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashsci

    if not torch.cuda.is_available():
        sys.exit("bench_backward: needs a CUDA GPU")
    env = environment(torch, flashsci, "cuda")
    for key, value in env.items():
        print(f"# {key}: {value}")
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    sdpa = {"FLASH": SDPBackend.FLASH_ATTENTION, "CUDNN": SDPBackend.CUDNN_ATTENTION}
    header = (f"{'dtype':5} {'hd':>4} {'causal':>6} {'batch':>5} {'seqlen':>6} | {'flashsci':>8} {'FLASH':>7} "
              f"{'CUDNN':>7} | {'fs/FLASH':>8} {'fs/CUDNN':>8} | {'rel err':>8}")
    print("backward TFLOP/s (median of do_bench); rel err: max |flashsci − ref| / max |ref| over dq, dk, dv")
    print(header)
    print("-" * len(header))
    writer = None
    csv_file = open(args.out, "w", newline="") if args.out else None
    for dtype_name in args.dtypes:
        dtype = dtypes[dtype_name]
        for head_dim in args.head_dims:
            for causal in args.causals:
                for seqlen in args.seqlens:
                    batch, heads = max(1, args.tokens // seqlen), HIDDEN // head_dim
                    flops = 4.0 * batch * heads * seqlen * seqlen * head_dim * (0.5 if causal else 1.0)
                    flops *= BACKWARD_FLOPS_PER_FORWARD_FLOP
                    torch.manual_seed(0)
                    q, k, v = (torch.randn(batch, seqlen, heads, head_dim, dtype=dtype, device="cuda",
                                           requires_grad=True) for _ in range(3))
                    dout = torch.randn(batch, seqlen, heads, head_dim, dtype=dtype, device="cuda")
                    runs = {"flashsci": lambda: flashsci.attention(q, k, v, causal=causal,
                                                                   deterministic=args.deterministic)}
                    for name, backend in sdpa.items():
                        def run(backend=backend):
                            with sdpa_kernel(backend):
                                return F.scaled_dot_product_attention(
                                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                    is_causal=causal).transpose(1, 2)
                        runs[name] = run
                    ms, grads, errors = {}, {}, {}
                    for name, run in runs.items():
                        try:
                            out = run()
                            grads[name] = torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
                            ms[name] = triton.testing.do_bench(
                                lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True),
                                warmup=25, rep=100, return_mode="median")
                        except Exception as e:  # report and go on with the other backends
                            errors[name] = first_line(e)
                        out = None
                    ref = next((n for n in ("CUDNN", "FLASH") if n in grads), None)
                    rel = None
                    if "flashsci" in grads and ref:
                        rel = max(((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
                                  for a, b in zip(grads["flashsci"], grads[ref]))
                    tf = {n: flops / (t * 1e-3) / 1e12 for n, t in ms.items()}
                    ratio = {n: tf["flashsci"] / tf[n] if "flashsci" in tf and n in tf else None
                             for n in ("FLASH", "CUDNN")}
                    print(f"{dtype_name:5} {head_dim:>4} {('yes' if causal else 'no'):>6} {batch:>5} {seqlen:>6} | "
                          f"{fmt(tf.get('flashsci'), '8.1f'):>8} {fmt(tf.get('FLASH'), '7.1f'):>7} "
                          f"{fmt(tf.get('CUDNN'), '7.1f'):>7} | {fmt(ratio['FLASH'], '8.3f'):>8} "
                          f"{fmt(ratio['CUDNN'], '8.3f'):>8} | {fmt(rel, '8.1e'):>8}")
                    for name, message in errors.items():
                        print(f"      {name}: {message}")
                    sys.stdout.flush()
                    row = {"card": env["card"], "dtype": dtype_name, "head_dim": head_dim, "causal": int(causal),
                           "batch": batch, "seqlen": seqlen, "heads": heads, "flops": flops,
                           "deterministic": int(args.deterministic), "reference": ref or "", "rel_err": rel,
                           **{f"tflops_{n}": tf.get(n) for n in runs},
                           "errors": "; ".join(f"{k}: {v}" for k, v in errors.items())}
                    if csv_file:
                        if writer is None:
                            writer = csv.DictWriter(csv_file, fieldnames=list(row))
                            writer.writeheader()
                        writer.writerow(row)
                        csv_file.flush()
                    q = k = v = dout = grads = None
                    torch.cuda.empty_cache()
    if csv_file:
        csv_file.close()


if __name__ == "__main__":
    main()
