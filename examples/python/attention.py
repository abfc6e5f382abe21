"""Causal attention from Python with numpy on the CPU backend, with the LSE.

    pip install bindings/python numpy
    FLASHSCI_LIBRARY=<prefix>/lib/libflashsci.so python3 examples/python/attention.py
"""
import numpy as np

import flashsci

rng = np.random.default_rng(0)
q = rng.standard_normal((1, 128, 8, 64), dtype=np.float32)      # [batch, seqlen, heads_q, head_dim]
k, v = rng.standard_normal((2, 1, 128, 2, 64), dtype=np.float32)  # 2 kv heads: GQA 8:2

out, lse = flashsci.attention(q, k, v, causal=True, return_lse=True)
print(f"libflashsci {flashsci.version_string()} from {flashsci.library_path()}")
print(f"out {out.shape} {out.dtype}, lse {lse.shape}; row 0 equals v[0]: {np.allclose(out[0, 0, 0], v[0, 0, 0])}")

# The same through a reusable plan (no per-call plan lookup):
plan = flashsci.Plan("cpu").set_shape(1, 128, 128, 8, 2, 64).set_dtype("float32").set_mask("causal")
out2 = np.empty_like(q)
plan.forward(q, k, v, out2)
assert np.array_equal(out, out2)

try:
    flashsci.attention(q[..., :60], k[..., :60], v[..., :60])    # head_dim 60: not a multiple of 8
except flashsci.Error as e:
    print(f"{e.status_name}: {e.message}")
