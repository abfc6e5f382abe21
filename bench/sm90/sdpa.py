"""PyTorch SDPA (cuDNN and FlashAttention-2 backends) at the harness's bench grid, same layout.

Prints lines `SDPA d=.. causal=.. s=.. dtype cudnn=TFLOP/s flash=TFLOP/s` for compare.py.
"""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench


def main():
    dims, seqs, dtype = [64, 128, 256], [512, 1024, 2048, 4096, 8192, 16384], torch.bfloat16
    heads, group = 0, 1  # heads 0: 2048 / head_dim; group: query heads per kv head
    for a in sys.argv[1:]:
        if a == "f16":
            dtype = torch.float16
        elif a.startswith("h="):
            heads = int(a[2:])
        elif a.startswith("g="):
            group = int(a[2:])
        elif a.startswith("d="):
            dims = [int(a[2:])]
        elif a.startswith("s="):
            seqs = [int(a[2:])]
    for d in dims:
        for causal in (0, 1):
            for s in seqs:
                b, h = 16384 // s, heads or 2048 // d
                # [batch, seqlen, heads, head_dim] viewed as SDPA's [batch, heads, seqlen, head_dim]
                q = torch.randn(b, s, h, d, device="cuda", dtype=dtype).transpose(1, 2)
                k, v = (torch.randn(b, s, h // group, d, device="cuda", dtype=dtype).transpose(1, 2) for _ in range(2))
                flops = 4 * b * h * s * s * d / (2 if causal else 1)
                out = {}
                for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                    with sdpa_kernel(backend):
                        ms = do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=bool(causal),
                                                                                               enable_gqa=group > 1),
                                      warmup=25, rep=100, return_mode="median")
                    out[name] = flops / ms / 1e9
                print(f"SDPA d={d} causal={causal} s={s} {str(dtype)[6:]} cudnn={out['cudnn']:.1f} flash={out['flash']:.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
