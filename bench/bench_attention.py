#!/usr/bin/env python3
"""Forward attention: libflashsci beside PyTorch SDPA (FLASH and CUDNN) in one run.

The benchmark grid (docs/performance.md): batch·seqlen = 16384 tokens, hidden 2048 (heads = 2048/head_dim),
seqlen 512..16384, head_dim 64/128/256, causal and not, bf16 and fp16. Every backend
runs on the same [batch, seqlen, heads, head_dim] tensors (SDPA gets transpose(1, 2)
views, as PyTorch does internally). Times are medians of
triton.testing.do_bench(warmup=25, rep=100); FLOPs = 4·b·h·s²·d, halved for causal.
flashsci's output is checked against SDPA CUDNN once per shape.

    FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python \\
        python3 bench/bench_attention.py --seqlens 2048,8192 --head-dims 128 --dtypes bf16

--seqlen-q N gives every sequence N queries against --seqlens keys (decoding and chunked prefill, e.g.
--gqa --seqlen-q 1 --seqlens 4096,16384 --causal 0); FLOPs are then 4·b·h·N·s·d.

FLASHSCI_KERNEL (read by the library at plan creation) may force a kernel; the table
names the kernel that ran. --out writes one CSV row per shape (as it goes) and, at the
end, a JSON file beside it with the environment (card, driver, torch, cuDNN, date).
"""

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))

TOKENS = 16384
HIDDEN = 2048
SEQLENS = [512, 1024, 2048, 4096, 8192, 16384]
HEAD_DIMS = [64, 128, 256]
DTYPES = ["bf16", "fp16"]
GQA_HEADS_Q, GQA_HEADS_KV, GQA_HEAD_DIM = 32, 8, 128
BACKENDS = ["flashsci", "FLASH", "CUDNN"]


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqlens", type=int_list, default=SEQLENS, help="comma-separated (default: 512..16384)")
    p.add_argument("--head-dims", type=int_list, default=HEAD_DIMS, help="comma-separated (default: 64,128,256)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated of bf16, fp16, fp32 (default: bf16,fp16)")
    p.add_argument("--causal", choices=["0", "1", "both"], default="both")
    p.add_argument("--tokens", type=int, default=TOKENS, help=f"batch·seqlen (default {TOKENS})")
    p.add_argument("--seqlen-q", type=int, default=0,
                   help="queries per sequence (default: as many as keys); --seqlens are then key lengths")
    p.add_argument("--gqa", action="store_true",
                   help=f"GQA preset: {GQA_HEADS_Q} q heads, {GQA_HEADS_KV} kv heads, head_dim {GQA_HEAD_DIM}")
    default_out = os.path.join(os.environ["OUT"], "bench.csv") if os.environ.get("OUT") else None
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: a smoke test of this script on the CPU backend (simple timer, no triton)")
    p.add_argument("--sdpa", default="FLASH,CUDNN",
                   help="SDPA backends to time beside flashsci, comma-separated of FLASH, CUDNN, or 'none' "
                        "(default: both; an A/B of two flashsci builds needs only CUDNN as its drift reference)")
    p.add_argument("--out", default=default_out, help="CSV path; JSON goes beside it (default: $OUT/bench.csv)")
    args = p.parse_args()
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in args.dtypes if d not in ("bf16", "fp16", "fp32")]
    if bad:
        p.error(f"unknown dtype(s) {bad}")
    args.sdpa = [] if args.sdpa == "none" else [b for b in args.sdpa.split(",") if b]
    bad = [b for b in args.sdpa if b not in ("FLASH", "CUDNN")]
    if bad:
        p.error(f"unknown SDPA backend(s) {bad}")
    args.causals = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    if args.seqlen_q and args.causal != "0":
        p.error("--seqlen-q runs without a mask (--causal 0): with fewer queries than keys a causal mask is not "
                "the square's half that the FLOP count assumes")
    return args


def shapes(args):
    """(batch, seqlen_q, seqlen, heads_q, heads_kv, head_dim, causal, dtype) for the grid (seqlen: keys)."""
    for dtype in args.dtypes:
        for head_dim in ([GQA_HEAD_DIM] if args.gqa else args.head_dims):
            for causal in args.causals:
                for seqlen in args.seqlens:
                    batch = max(1, args.tokens // seqlen)
                    if args.gqa:
                        heads_q, heads_kv = GQA_HEADS_Q, GQA_HEADS_KV
                    else:
                        heads_q = heads_kv = HIDDEN // head_dim
                    yield batch, args.seqlen_q or seqlen, seqlen, heads_q, heads_kv, head_dim, causal, dtype


def environment(torch, flashsci, device):
    def smi(field):
        try:
            return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader", "-i",
                                   str(torch.cuda.current_device())],
                                  capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    on_gpu = device == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "card": torch.cuda.get_device_name() if on_gpu else platform.processor() or "cpu",
        "driver": smi("driver_version") if on_gpu else "n/a",
        "sm_clock_max_mhz": smi("clocks.max.sm") if on_gpu else "n/a",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": f"{cudnn // 10000}.{cudnn // 100 % 100}.{cudnn % 100}" if cudnn and cudnn >= 10000 else str(cudnn),
        "flashsci": flashsci.version_string(),
        "flashsci_library": flashsci.library_path(),
        "flashsci_kernel_env": os.environ.get("FLASHSCI_KERNEL", ""),
        "python": platform.python_version(),
    }


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def first_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:160]


def main():
    args = parse_args()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashsci

    device = args.device
    if device == "cuda":
        import triton.testing

        if not torch.cuda.is_available():
            sys.exit("bench_attention: needs a CUDA GPU (or --device cpu for a smoke test)")

        def bench(fn):
            return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

        def sync():
            torch.cuda.synchronize()
    else:
        def bench(fn, reps=3):
            fn()
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
            return statistics.median(times)

        def sync():
            pass
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    sdpa_backends = {name: backend for name, backend in
                     (("FLASH", SDPBackend.FLASH_ATTENTION), ("CUDNN", SDPBackend.CUDNN_ATTENTION)) if name in args.sdpa}

    env = environment(torch, flashsci, device)
    for key, value in env.items():
        print(f"# {key}: {value}")
    sys.stdout.flush()

    header = (f"{'dtype':5} {'hd':>4} {'causal':>6} {'batch':>5} {'seqlen':>6} {'hq/hkv':>6} | "
              f"{'flashsci':>8} {'FLASH':>7} {'CUDNN':>7} | {'fs/CUDNN':>8} | {'max|err|':>9} | kernel")
    print("TFLOP/s (median of do_bench); max|err| is flashsci vs CUDNN")
    print(header)
    print("-" * len(header))

    rows = []
    csv_file = writer = None
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        csv_file = open(args.out, "w", newline="")

    for batch, seqlen_q, seqlen, heads_q, heads_kv, head_dim, causal, dtype_name in shapes(args):
        dtype = dtypes[dtype_name]
        flops = 4.0 * batch * heads_q * seqlen_q * seqlen * head_dim * (0.5 if causal else 1.0)
        row = {"card": env["card"], "dtype": dtype_name, "head_dim": head_dim, "causal": int(causal), "batch": batch,
               "seqlen": seqlen, "seqlen_q": seqlen_q, "heads_q": heads_q, "heads_kv": heads_kv, "flops": flops}
        row.update({f"ms_{name}": None for name in BACKENDS})
        errors = {}
        outputs = {}
        torch.manual_seed(0)
        q = torch.randn(batch, seqlen_q, heads_q, head_dim, dtype=dtype, device=device)
        k = torch.randn(batch, seqlen, heads_kv, head_dim, dtype=dtype, device=device)
        v = torch.randn(batch, seqlen, heads_kv, head_dim, dtype=dtype, device=device)
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [b, h, s, d] views
        sdpa_kw = {"is_causal": causal}
        if heads_q != heads_kv:
            sdpa_kw["enable_gqa"] = True

        # flashsci: the plan is made once; the timed loop calls flashsci_forward through ctypes.
        kernel = "n/a"
        try:
            fwd = flashsci.prepare(q, k, v, causal=causal)
            kernel = fwd.plan.kernel_name or os.environ.get("FLASHSCI_KERNEL", "?")
            forward, fargs = flashsci.lib().flashsci_forward, fwd.args
            status = forward(*fargs)
            if status != 0:
                raise flashsci.Error(status, flashsci.lib().flashsci_last_error().decode(errors="replace"))
            sync()
            outputs["flashsci"] = fwd.out
            ms = bench(lambda: forward(*fargs))
            row["ms_flashsci"] = ms
        except Exception as e:  # report and go on with the other backends
            errors["flashsci"] = first_line(e)

        for name, backend in sdpa_backends.items():
            try:
                with sdpa_kernel(backend):
                    outputs[name] = F.scaled_dot_product_attention(qt, kt, vt, **sdpa_kw).transpose(1, 2)
                    sync()
                    ms = bench(lambda: F.scaled_dot_product_attention(qt, kt, vt, **sdpa_kw))
                row[f"ms_{name}"] = ms
            except Exception as e:
                errors[name] = first_line(e)

        # Check flashsci against CUDNN (else FLASH, else EFFICIENT for dtypes the others refuse).
        ref_name = next((n for n in ("CUDNN", "FLASH") if n in outputs), None)
        if ref_name is None and "flashsci" in outputs:
            try:
                with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                    outputs["EFFICIENT"] = F.scaled_dot_product_attention(qt, kt, vt, **sdpa_kw).transpose(1, 2)
                ref_name = "EFFICIENT"
            except Exception as e:
                errors["EFFICIENT"] = first_line(e)
        max_err = None
        if "flashsci" in outputs and ref_name:
            max_err = (outputs["flashsci"].float() - outputs[ref_name].float()).abs().max().item()
        row.update({"kernel": kernel, "reference": ref_name or "", "max_abs_err": max_err})
        for name in BACKENDS:
            ms = row.get(f"ms_{name}")
            row[f"tflops_{name}"] = flops / (ms * 1e-3) / 1e12 if ms else None
        fs, cu = row["tflops_flashsci"], row["tflops_CUDNN"]
        row["ratio_flashsci_cudnn"] = fs / cu if fs and cu else None
        row["errors"] = "; ".join(f"{k}: {v}" for k, v in errors.items())
        rows.append(row)

        shown = seqlen if seqlen_q == seqlen else f"{seqlen_q}x{seqlen}"
        print(f"{dtype_name:5} {head_dim:>4} {('yes' if causal else 'no'):>6} {batch:>5} {shown:>6} "
              f"{f'{heads_q}/{heads_kv}':>6} | {fmt(row['tflops_flashsci'], '8.1f'):>8} "
              f"{fmt(row['tflops_FLASH'], '7.1f'):>7} {fmt(row['tflops_CUDNN'], '7.1f'):>7} | "
              f"{fmt(row['ratio_flashsci_cudnn'], '8.3f'):>8} | {fmt(max_err, '9.2e'):>9} | {kernel}")
        for name, message in errors.items():
            print(f"      {name}: {message}")
        sys.stdout.flush()
        if csv_file:
            if writer is None:
                writer = csv.DictWriter(csv_file, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            csv_file.flush()
        q = k = v = qt = kt = vt = outputs = fwd = None
        if device == "cuda":
            torch.cuda.empty_cache()

    if csv_file:
        csv_file.close()
        json_path = os.path.splitext(args.out)[0] + ".json"
        with open(json_path, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)
        print(f"# wrote {args.out} and {json_path}")


if __name__ == "__main__":
    main()
