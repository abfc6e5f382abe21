#!/usr/bin/env python3
"""fp32 attention: libflashsci's precision modes beside PyTorch SDPA EFFICIENT and MATH in one run.

The grid of bench_attention.py (batch·seqlen = 16384 tokens, hidden 2048), fp32 inputs. flashsci runs each of
FLASHSCI_PRECISION_DEFAULT (3xTF32 on tensor cores), TF32 (one pass) and IEEE (fp32 FMAs) on its own plan;
SDPA runs EFFICIENT (3xTF32 in PyTorch's memory-efficient kernel) and MATH. Times are medians of
triton.testing.do_bench(warmup=25, rep=100); FLOPs = 4·b·h·s²·d, halved for causal. Every output's error is
measured against an fp64 reference over the first batch element's first two heads, as
max |out − ref| / max |ref|.

    FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python python3 bench/bench_fp32.py
"""

import argparse
import csv
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))

from bench_attention import HIDDEN, TOKENS, environment, first_line, fmt, int_list  # noqa: E402

PRECISIONS = {"DEFAULT": 0, "TF32": 1, "IEEE": 2}  # flashsci_precision_t
REFERENCE_HEADS = 2
REFERENCE_ROWS_PER_CHUNK = 1024


def reference_error(torch, q, k, v, out, causal):
    """max |out − ref| / max |ref| over batch 0, heads 0..REFERENCE_HEADS-1, with ref computed in fp64."""
    worst = 0.0
    scale = q.shape[-1] ** -0.5
    for h in range(min(REFERENCE_HEADS, q.shape[2])):
        qh, kh, vh = (t[0, :, h].double() for t in (q, k, v))
        ref = torch.empty_like(qh[:, : vh.shape[1]])
        for r0 in range(0, qh.shape[0], REFERENCE_ROWS_PER_CHUNK):
            s = qh[r0:r0 + REFERENCE_ROWS_PER_CHUNK] @ kh.T * scale
            if causal:
                rows = torch.arange(r0, r0 + s.shape[0], device=s.device)[:, None]
                s = s.masked_fill(torch.arange(s.shape[1], device=s.device)[None, :] > rows, float("-inf"))
            ref[r0:r0 + s.shape[0]] = torch.softmax(s, dim=-1) @ vh
        err = (out[0, :, h].double() - ref).abs().max() / ref.abs().max()
        worst = max(worst, err.item())
    return worst


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqlens", type=int_list, default=[512, 1024, 2048, 4096, 8192])
    p.add_argument("--head-dims", type=int_list, default=[64, 128])
    p.add_argument("--causal", choices=["0", "1", "both"], default="both")
    p.add_argument("--tokens", type=int, default=TOKENS)
    p.add_argument("--out", default=os.path.join(os.environ["OUT"], "bench_fp32.csv") if os.environ.get("OUT")
                   else None)
    args = p.parse_args()
    causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]

    import torch
    import torch.nn.functional as F
    import triton.testing
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashsci

    if not torch.cuda.is_available():
        sys.exit("bench_fp32: needs a CUDA GPU")
    env = environment(torch, flashsci, "cuda")
    for key, value in env.items():
        print(f"# {key}: {value}")
    lib = flashsci.lib()
    names = [f"fs_{p}" for p in PRECISIONS] + ["EFFICIENT", "MATH"]
    header = (f"{'hd':>4} {'causal':>6} {'batch':>5} {'seqlen':>6} | " + " ".join(f"{n:>10}" for n in names) +
              f" | {'DEF/EFF':>7} {'TF32/EFF':>8} | errors vs fp64: " + " ".join(names))
    print("TFLOP/s (median of do_bench)")
    print(header)
    print("-" * len(header))
    writer = None
    csv_file = open(args.out, "w", newline="") if args.out else None
    for head_dim in args.head_dims:
        for causal in causals:
            for seqlen in args.seqlens:
                batch, heads = max(1, args.tokens // seqlen), HIDDEN // head_dim
                flops = 4.0 * batch * heads * seqlen * seqlen * head_dim * (0.5 if causal else 1.0)
                torch.manual_seed(0)
                q, k, v = (torch.randn(batch, seqlen, heads, head_dim, device="cuda") for _ in range(3))
                ms, err, errors, kernels = {}, {}, {}, {}
                for precision, code in PRECISIONS.items():
                    name = f"fs_{precision}"
                    try:
                        plan = flashsci.Plan("cuda").set_shape(batch, seqlen, seqlen, heads, heads, head_dim)
                        plan.set_dtype("float32").set_mask("causal" if causal else "none")
                        status = lib.flashsci_plan_set_precision(plan.handle, ctypes.c_int(code))
                        if status != 0:
                            raise flashsci.Error(status, lib.flashsci_last_error().decode(errors="replace"))
                        kernels[name] = plan.kernel_name
                        out = torch.full_like(q, float("nan"))
                        plan.forward(q, k, v, out)
                        torch.cuda.synchronize()
                        err[name] = reference_error(torch, q, k, v, out, causal)
                        ms[name] = triton.testing.do_bench(lambda: plan.forward(q, k, v, out), warmup=25, rep=100,
                                                           return_mode="median")
                        plan.close()
                    except Exception as e:  # report and go on
                        errors[name] = first_line(e)
                for name, backend in (("EFFICIENT", SDPBackend.EFFICIENT_ATTENTION), ("MATH", SDPBackend.MATH)):
                    try:
                        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
                        with sdpa_kernel(backend):
                            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)
                            err[name] = reference_error(torch, q, k, v, out, causal)
                            ms[name] = triton.testing.do_bench(
                                lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal),
                                warmup=25, rep=100, return_mode="median")
                    except Exception as e:
                        errors[name] = first_line(e)
                    out = None
                tf = {n: flops / (t * 1e-3) / 1e12 for n, t in ms.items()}
                eff = tf.get("EFFICIENT")
                r_def = tf["fs_DEFAULT"] / eff if eff and "fs_DEFAULT" in tf else None
                r_tf32 = tf["fs_TF32"] / eff if eff and "fs_TF32" in tf else None
                print(f"{head_dim:>4} {('yes' if causal else 'no'):>6} {batch:>5} {seqlen:>6} | " +
                      " ".join(f"{fmt(tf.get(n), '10.1f'):>10}" for n in names) +
                      f" | {fmt(r_def, '7.2f'):>7} {fmt(r_tf32, '8.2f'):>8} | " +
                      " ".join(fmt(err.get(n), '.1e') for n in names))
                for name, message in errors.items():
                    print(f"      {name}: {message}")
                print(f"      kernels: {kernels}")
                sys.stdout.flush()
                row = {"card": env["card"], "head_dim": head_dim, "causal": int(causal), "batch": batch,
                       "seqlen": seqlen, "heads": heads, "flops": flops,
                       **{f"tflops_{n}": tf.get(n) for n in names}, **{f"err_{n}": err.get(n) for n in names},
                       "kernels": ";".join(f"{k}={v}" for k, v in kernels.items()),
                       "errors": "; ".join(f"{k}: {v}" for k, v in errors.items())}
                if csv_file:
                    if writer is None:
                        writer = csv.DictWriter(csv_file, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    csv_file.flush()
                q = k = v = None
                torch.cuda.empty_cache()
    if csv_file:
        csv_file.close()


if __name__ == "__main__":
    main()
