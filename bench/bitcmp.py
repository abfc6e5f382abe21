#!/usr/bin/env python3
"""Check that two builds of libflashsci compute the same bits on fixed GPU problems.

For changes that should alter only a kernel's schedule (descriptors, barriers, where a tile is staged), a
bit-for-bit comparison is a sharper test than a tolerance.

`save OUT.pt` runs fixed-seed forwards through the library named by FLASHSCI_LIBRARY on the GPU and saves every
O and LSE: per head dim (--head-dims) and dtype (fp16, bf16), dense problems under each mask (a 150 × 333 GQA
problem with scores of ~81 standard deviations, 1000 × 1000, 4097 × 4097), a varlen batch of mixed lengths
(1 to 1000, one empty), and one dense fp16 problem with softcap, ALiBi and a window. `compare A.pt B.pt` names the
outputs that differ in any bit and exits 1 if one does.

    FLASHSCI_LIBRARY=old/libflashsci.so PYTHONPATH=bindings/python python3 bench/bitcmp.py save /tmp/old.pt
    FLASHSCI_LIBRARY=new/libflashsci.so PYTHONPATH=bindings/python python3 bench/bitcmp.py save /tmp/new.pt
    python3 bench/bitcmp.py compare /tmp/old.pt /tmp/new.pt
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))

MASKS = ("none", "causal", "causal_bottom_right")
# (batch, seqlen_q, seqlen_k, heads_q, heads_kv, input scale): ragged GQA with large scores, then two squares.
DENSE = ((2, 150, 333, 2, 1, 9.0), (2, 1000, 1000, 4, 2, 1.0), (1, 4097, 4097, 2, 2, 1.0))
VARLEN_LENGTHS = (1, 17, 129, 300, 77, 1000, 0, 513)
SEED = 1234


def save(path, head_dims):
    import torch
    import flashsci

    g = torch.Generator(device="cuda").manual_seed(SEED)

    def randn(*shape, scale=1.0, dtype):
        return (torch.randn(*shape, device="cuda", generator=g) * scale).to(dtype)

    saved = {}
    for hd in head_dims:
        for dt in (torch.float16, torch.bfloat16):
            for mask in MASKS:
                for b, sq, sk, hq, hkv, scale in DENSE:
                    q = randn(b, sq, hq, hd, scale=scale, dtype=dt)
                    k = randn(b, sk, hkv, hd, scale=scale, dtype=dt)
                    v = randn(b, sk, hkv, hd, dtype=dt)
                    out, lse = torch.empty_like(q), torch.empty(b, hq, sq, device="cuda")
                    plan = flashsci.Plan("cuda").set_shape(b, sq, sk, hq, hkv, hd).set_dtype(dt).set_mask(mask)
                    plan.forward(q, k, v, out, lse)
                    key = f"{hd}-{dt}-{mask}-{sq}x{sk}"
                    saved[key + "-o"], saved[key + "-lse"] = out.cpu(), lse.cpu()
                cu = torch.tensor([0, *torch.tensor(VARLEN_LENGTHS).cumsum(0).tolist()], dtype=torch.int32,
                                  device="cuda")
                total = int(cu[-1])
                q, k, v = randn(total, 4, hd, dtype=dt), randn(total, 2, hd, dtype=dt), randn(total, 2, hd, dtype=dt)
                out, lse = torch.zeros_like(q), torch.empty(4, total, device="cuda")
                longest = max(VARLEN_LENGTHS)
                plan = flashsci.Plan("cuda").set_varlen_shape(len(VARLEN_LENGTHS), total, total, longest, longest,
                                                              4, 2, hd)
                plan.set_dtype(dt).set_mask(mask).forward_varlen(q, k, v, out, cu, cu, lse)
                key = f"{hd}-{dt}-{mask}-varlen"
                saved[key + "-o"], saved[key + "-lse"] = out.cpu(), lse.cpu()
        b, s, h = 2, 777, 4
        q, k, v = (randn(b, s, h, hd, dtype=torch.float16) for _ in range(3))
        out, lse = torch.empty_like(q), torch.empty(b, h, s, device="cuda")
        plan = flashsci.Plan("cuda").set_shape(b, s, s, h, h, hd).set_dtype(torch.float16).set_mask("causal")
        plan.set_softcap(30.0).set_alibi_slopes([0.5 / (i + 1) for i in range(h)]).set_window(300, -1)
        plan.forward(q, k, v, out, lse)
        saved[f"{hd}-features-o"], saved[f"{hd}-features-lse"] = out.cpu(), lse.cpu()
    torch.save(saved, path)
    print(f"bitcmp: saved {len(saved)} outputs to {path}; the last ran {plan.kernel_name}")


def compare(path_a, path_b):
    import torch

    a, b = torch.load(path_a), torch.load(path_b)
    if a.keys() != b.keys():
        sys.exit(f"bitcmp: {path_a} and {path_b} hold different outputs")
    differ = [k for k in a if not torch.equal(a[k].contiguous().view(torch.uint8), b[k].contiguous().view(torch.uint8))]
    print(f"bitcmp: {len(a)} outputs, {len(differ)} differ{': ' + ', '.join(differ[:10]) if differ else ''}")
    return 1 if differ else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="run the fixed problems and save O and LSE")
    s.add_argument("out")
    s.add_argument("--head-dims", default="64,96,128,192,256", help="comma-separated (default 64,96,128,192,256)")
    c = sub.add_parser("compare", help="compare two saved runs bit for bit")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args()
    if args.command == "save":
        save(args.out, [int(x) for x in args.head_dims.split(",") if x])
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
