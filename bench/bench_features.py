#!/usr/bin/env python3
"""Benchmark flashsci's attention features beside the plain forward and PyTorch SDPA (CUDNN), same tensors.

For each (head_dim, causal, seqlen) at batch·seqlen = --tokens tokens, bf16:
  plain    flashsci with no feature, and SDPA CUDNN (the bar);
  window   a sliding window of --window keys to the left (and none to the right under causal masks,
           --window to the right otherwise): TFLOP/s count only the band's work;
  softcap  softcap --softcap; alibi: ALiBi slopes 2^(-8h/heads); softcap+alibi: both;
  varlen   one packed batch of mixed lengths (--tokens in all, lengths from seqlen/4 to 2·seqlen·3/4,
           seeded) through flashsci_forward_varlen, beside the dense batch of the same total tokens:
           TFLOP/s count each sequence's own work.
SDPA has none of these features but varlen on its FLASH or CUDNN backends, so their ratio is to flashsci's own
plain forward (a feature's cost) and to SDPA CUDNN's plain forward (the bar). Varlen is also run through SDPA
itself: the same packed tokens as nested (jagged) tensors on its FLASH and CUDNN backends, where PyTorch
takes them ("SDPA varlen" rows; their last column is flashsci varlen ÷ that row).

  FLASHSCI_LIBRARY=build/libflashsci.so PYTHONPATH=bindings/python python3 bench/bench_features.py
"""
import argparse
import csv
import json
import os
import random
import sys

HEADS_TOTAL = 2048  # heads · head_dim
LOG_SLOPE = 8.0     # ALiBi slopes 2^(-LOG_SLOPE·h/heads)
# What --features picks from: the variants below by their first word, and SDPA's own varlen rows.
FEATURES = ("window", "softcap", "alibi", "softcap+alibi", "varlen", "sdpa-varlen")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqlens", default="2048,8192", help="comma-separated (default 2048,8192)")
    p.add_argument("--head-dims", default="64,128,256", help="comma-separated (default 64,128,256)")
    p.add_argument("--tokens", type=int, default=16384, help="batch·seqlen (default 16384)")
    p.add_argument("--window", type=int, default=512, help="window keys left (and right when not causal)")
    p.add_argument("--softcap", type=float, default=30.0)
    p.add_argument("--features", default=",".join(FEATURES),
                   help=f"comma-separated from {','.join(FEATURES)} (default all; plain always runs, the ratios need it)")
    default_out = os.path.join(os.environ.get("OUT", "."), "bench_features.csv")
    p.add_argument("--out", default=default_out, help="CSV path; JSON goes beside it")
    return p.parse_args()


def band_pairs(seqlen, left, right, causal):
    """(query, key) pairs a square seqlen×seqlen problem visits under the mask and window."""
    right = 0 if causal else right
    total = 0
    for i in range(seqlen):
        lo, hi = max(0, i - left), min(seqlen - 1, i + right)
        total += hi - lo + 1
    return total


def sdpa_varlen(packed, cu, causal, work, ours, bench, base):
    """SDPA on the packed batch as nested (jagged) tensors [batch, heads, j, head_dim], FLASH and CUDNN."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    try:
        offsets = cu.to(torch.int64)
        nested = [torch.nested.nested_tensor_from_jagged(x, offsets).transpose(1, 2) for x in packed]
    except Exception as e:  # an older PyTorch without jagged nested tensors
        return [dict(base, feature="SDPA varlen", error=str(e).splitlines()[0])]
    for name, backend in (("FLASH", SDPBackend.FLASH_ATTENTION), ("CUDNN", SDPBackend.CUDNN_ATTENTION)):
        row = dict(base, feature=f"SDPA varlen {name}")
        label = f"{base['head_dim']:>4} {('yes' if causal else 'no'):>6} {base['seqlen']:>6} {row['feature']:>18}"
        try:
            def run():
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(*nested, is_causal=causal)
            run()
            torch.cuda.synchronize()
            ms = bench(run)
            tflops = work / (ms * 1e-3) / 1e12
            row.update({"ms": ms, "tflops": tflops, "flashsci_varlen_ratio": ours / tflops if ours else None})
            ratio = f"{row['flashsci_varlen_ratio']:6.3f}" if ours else "   n/a"
            print(f"{label} | {tflops:8.1f} | flashsci varlen ÷ this {ratio}")
        except Exception as e:  # this backend does not take nested tensors here: report and go on
            row["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"{label} | {row['error'][:100]}")
        rows.append(row)
    return rows


def main():
    args = parse_args()
    features = set(args.features.split(","))
    if not features <= set(FEATURES):
        sys.exit(f"bench_features: --features takes {','.join(FEATURES)}, not {','.join(features - set(FEATURES))}")
    import torch
    import torch.nn.functional as F
    import triton.testing
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import flashsci

    if not torch.cuda.is_available():
        sys.exit("bench_features: needs a CUDA GPU")

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

    def timed(fwd):  # a Forward call is one ctypes call of flashsci_forward(_varlen) on its prepared arguments
        status = fwd()
        if status != 0:
            raise flashsci.Error(status, flashsci.lib().flashsci_last_error().decode(errors="replace"))
        torch.cuda.synchronize()
        return bench(fwd)

    props = torch.cuda.get_device_properties(0)
    env = {"card": props.name, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
           "flashsci": flashsci.version_string(), "flashsci_library": flashsci.library_path()}
    for key, value in env.items():
        print(f"# {key}: {value}")
    print("TFLOP/s (median of do_bench), bf16; ratio: to flashsci plain / to SDPA CUDNN plain")
    header = f"{'hd':>4} {'causal':>6} {'seqlen':>6} {'feature':>14} | {'TFLOP/s':>8} | {'÷plain':>6} {'÷CUDNN':>6} | kernel"
    print(header)
    print("-" * len(header))
    rows = []
    rng = random.Random(0)
    for head_dim in [int(x) for x in args.head_dims.split(",")]:
        heads = HEADS_TOTAL // head_dim
        slopes = [2.0 ** (-LOG_SLOPE * (h + 1) / heads) for h in range(heads)]
        for causal in (False, True):
            for seqlen in [int(x) for x in args.seqlens.split(",")]:
                batch = max(1, args.tokens // seqlen)
                torch.manual_seed(0)
                q, k, v = (torch.randn(batch, seqlen, heads, head_dim, dtype=torch.bfloat16, device="cuda")
                           for _ in range(3))
                full = 4.0 * batch * heads * seqlen * seqlen * head_dim * (0.5 if causal else 1.0)
                pairs = band_pairs(seqlen, args.window, args.window, causal)
                windowed = 4.0 * batch * heads * pairs * head_dim
                qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    cudnn_ms = bench(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))
                cudnn = full / (cudnn_ms * 1e-3) / 1e12

                # Mixed lengths with the same total tokens, packed along one axis.
                lens = []
                while sum(lens) < args.tokens:
                    lens.append(min(rng.randint(seqlen // 4, 2 * seqlen - seqlen // 4), args.tokens - sum(lens)))
                cu = torch.tensor([0] + [sum(lens[:i + 1]) for i in range(len(lens))], dtype=torch.int32,
                                  device="cuda")
                packed = [x.reshape(batch * seqlen, heads, head_dim)[:sum(lens)] for x in (q, k, v)]
                varlen_work = sum(4.0 * heads * n * n * head_dim * (0.5 if causal else 1.0) for n in lens)

                variants = [
                    ("plain", full, lambda: flashsci.prepare(q, k, v, causal=causal)),
                    (f"window {args.window}", windowed,
                     lambda: flashsci.prepare(q, k, v, causal=causal, causal_alignment="bottom_right",
                                              window=(args.window, 0 if causal else args.window))),
                    ("softcap", full, lambda: flashsci.prepare(q, k, v, causal=causal, softcap=args.softcap)),
                    ("alibi", full, lambda: flashsci.prepare(q, k, v, causal=causal, alibi_slopes=slopes)),
                    ("softcap+alibi", full,
                     lambda: flashsci.prepare(q, k, v, causal=causal, softcap=args.softcap, alibi_slopes=slopes)),
                    (f"varlen x{len(lens)}", varlen_work,
                     lambda: flashsci.prepare_varlen(*packed, cu, cu, max(lens), max(lens), causal=causal,
                                                     causal_alignment="bottom_right")),
                ]
                variants = [v for v in variants if v[0] == "plain" or v[0].split()[0] in features]
                plain = None
                for name, work, make in variants:
                    row = {"card": env["card"], "head_dim": head_dim, "causal": int(causal), "seqlen": seqlen,
                           "batch": batch, "heads": heads, "feature": name, "flops": work,
                           "tflops_cudnn_plain": cudnn}
                    try:
                        fwd = make()
                        ms = timed(fwd)
                        tflops = work / (ms * 1e-3) / 1e12
                        plain = tflops if name == "plain" else plain
                        row.update({"ms": ms, "tflops": tflops, "kernel": fwd.plan.kernel_name,
                                    "ratio_plain": tflops / plain if plain else None, "ratio_cudnn": tflops / cudnn})
                        print(f"{head_dim:>4} {('yes' if causal else 'no'):>6} {seqlen:>6} {name:>14} | "
                              f"{tflops:8.1f} | {row['ratio_plain']:6.3f} {row['ratio_cudnn']:6.3f} | {row['kernel']}")
                    except Exception as e:  # report and go on
                        row["error"] = str(e).splitlines()[0]
                        print(f"{head_dim:>4} {('yes' if causal else 'no'):>6} {seqlen:>6} {name:>14} | {row['error']}")
                    rows.append(row)
                    sys.stdout.flush()
                print(f"{head_dim:>4} {('yes' if causal else 'no'):>6} {seqlen:>6} {'SDPA CUDNN':>14} | {cudnn:8.1f} |")
                if "sdpa-varlen" in features:
                    ours = next((r.get("tflops") for r in rows[-len(variants):] if r["feature"].startswith("varlen")),
                                None)
                    rows.extend(sdpa_varlen(packed, cu, causal, varlen_work, ours, bench,
                                            {"card": env["card"], "head_dim": head_dim, "causal": int(causal),
                                             "seqlen": seqlen, "batch": len(lens), "heads": heads,
                                             "flops": varlen_work}))
                q = k = v = qt = kt = vt = packed = None
                torch.cuda.empty_cache()

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fields = sorted({key for row in rows for key in row})
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
