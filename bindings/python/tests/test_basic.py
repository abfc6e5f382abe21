"""Smoke tests of the ctypes binding: loading, version, and one CPU forward per mask."""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import flashsci  # noqa: E402

try:
    flashsci.lib()
except OSError as e:  # not built yet
    pytest.skip(f"libflashsci not found: {e}", allow_module_level=True)


def test_version():
    major, minor, patch = map(int, flashsci.version_string().split("."))
    assert flashsci.version() == major * 10000 + minor * 100 + patch


def test_error_carries_status_and_message():
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 4, 2, 12)  # head_dim 12 is not a multiple of 8
    with pytest.raises(flashsci.Error) as info:
        flashsci.attention(q, q, q)
    assert info.value.status == 1 and info.value.message


def reference(q, k, v, causal, alignment, scale):
    """Naive fp64 attention in [batch, seqlen, heads, head_dim], and lse [batch, heads, seqlen_q]."""
    torch = pytest.importorskip("torch")
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    s = scale * q @ k.transpose(-1, -2)
    sq, sk = s.shape[-2:]
    if causal:
        shift = 0 if alignment == "top_left" else sk - sq
        keep = torch.arange(sk)[None, :] <= torch.arange(sq)[:, None] + shift
        s = s.masked_fill(~keep, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    return (p @ v).transpose(1, 2), lse


@pytest.mark.parametrize("causal,alignment", [(False, "top_left"), (True, "top_left"), (True, "bottom_right")])
def test_cpu_forward_matches_fp64(causal, alignment):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 33, 4, 16, generator=g)
    kv = torch.randn(2, 17, 2, 2, 16, generator=g)  # packed k/v: strided views, GQA 4:2
    k, v = kv[:, :, 0], kv[:, :, 1]
    out, lse = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True)
    ref, ref_lse = reference(q, k, v, causal, alignment, 1 / math.sqrt(16))
    assert out.shape == q.shape and lse.shape == (2, 4, 33)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
