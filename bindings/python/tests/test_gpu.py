"""The binding on CUDA with torch tensors, against torch SDPA (skipped without a CUDA torch).

Run on a GPU machine:  FLASHSCI_LIBRARY=build/libflashsci.so python3 -m pytest bindings/python/tests
"""

import math

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)
import torch.nn.functional as F  # noqa: E402

import flashsci  # noqa: E402

# (dtype, seqlen, head_dim): the shapes the lead asked for.
CASES = [(torch.bfloat16, 128, 64), (torch.bfloat16, 256, 64), (torch.float32, 512, 128)]
BATCH, HEADS = 2, 4


def tolerance(dtype, ref):
    """bf16 outputs round to 8 bits of mantissa: 1e-2 relative to the output scale; fp32 is exact-ish."""
    scale = ref.abs().max().item()
    return (1e-2 * max(scale, 1.0), 1e-2) if dtype == torch.bfloat16 else (2e-5 * max(scale, 1.0), 1e-4)


def sdpa(q, k, v, causal):
    """torch SDPA on [b, s, h, d] tensors, fp32 math for fp32 (no TF32)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2)


def lse_reference(q, k, causal):
    """log Σ exp(scale·q·k) per row in fp64: [b, h, s_q]."""
    qd, kd = q.double().transpose(1, 2), k.double().transpose(1, 2)
    s = (qd @ kd.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1), -math.inf)
    return torch.logsumexp(s, dim=-1)


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype,seqlen,head_dim", CASES, ids=lambda x: str(x).replace("torch.", ""))
def test_matches_sdpa_and_lse(dtype, seqlen, head_dim, causal):
    g = torch.Generator(device="cuda").manual_seed(seqlen + head_dim)
    q, k, v = (torch.randn(BATCH, seqlen, HEADS, head_dim, device="cuda", dtype=dtype, generator=g) for _ in range(3))
    out, lse = flashsci.attention(q, k, v, causal=causal, return_lse=True)
    torch.cuda.synchronize()
    assert out.dtype == dtype and out.device == q.device and out.shape == q.shape
    assert lse.dtype == torch.float32 and lse.shape == (BATCH, HEADS, seqlen)
    ref = sdpa(q, k, v, causal)
    atol, rtol = tolerance(dtype, ref)
    torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=rtol)
    torch.testing.assert_close(lse.double(), lse_reference(q, k, causal), atol=1e-3, rtol=1e-4)


def test_gqa_strided_bottom_right_against_sdpa():
    g = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(2, 200, 8, 64, device="cuda", dtype=torch.bfloat16, generator=g)
    kv = torch.randn(2, 300, 2, 2, 64, device="cuda", dtype=torch.bfloat16, generator=g)
    k, v = kv[:, :, 0], kv[:, :, 1]  # strided views
    out = flashsci.attention(q, k, v, causal=True, causal_alignment="bottom_right")
    kr, vr = (t.repeat_interleave(4, dim=2) for t in (k, v))
    keep = torch.ones(200, 300, dtype=torch.bool, device="cuda").tril(300 - 200)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), kr.transpose(1, 2), vr.transpose(1, 2),
                                         attn_mask=keep).transpose(1, 2)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=1e-2)


def test_runs_on_torch_current_stream():
    q = torch.randn(1, 256, 4, 64, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        fwd = flashsci.prepare(q, q, q)
        assert fwd.args[-1] == side.cuda_stream
        assert flashsci.lib().flashsci_forward(*fwd.args) == 0
    side.synchronize()
    torch.testing.assert_close(fwd.out.float(), sdpa(q, q, q, False).float(), atol=2e-2, rtol=1e-2)


class CudaArrayInterfaceOnly:
    def __init__(self, t):
        self._t = t
        self.__cuda_array_interface__ = t.__cuda_array_interface__


class DLPackOnly:
    def __init__(self, t):
        self._t = t

    def __dlpack__(self, stream=None):
        return self._t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


@pytest.mark.parametrize("wrap", [CudaArrayInterfaceOnly, DLPackOnly], ids=["cuda_array_interface", "dlpack"])
def test_generic_cuda_arrays(wrap):
    q, k, v = (torch.randn(1, 128, 2, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    out = torch.empty_like(q)
    res = flashsci.attention(wrap(q), wrap(k), wrap(v), out=wrap(out), causal=True)
    torch.cuda.synchronize()
    assert isinstance(res, wrap)
    torch.testing.assert_close(out.float(), sdpa(q, k, v, True).float(), atol=1e-2, rtol=1e-2)


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    q = cupy.random.standard_normal((1, 64, 2, 64), dtype=cupy.float32)
    out, lse = flashsci.attention(q, q, q, return_lse=True)
    assert isinstance(out, cupy.ndarray) and isinstance(lse, cupy.ndarray)
    ref = sdpa(*(torch.as_tensor(q, device="cuda"),) * 3, False)
    torch.testing.assert_close(torch.as_tensor(out, device="cuda"), ref, atol=1e-4, rtol=1e-4)


def test_plan_with_raw_pointers_and_workspace():
    q = torch.randn(2, 512, 8, 128, device="cuda", dtype=torch.bfloat16)
    plan = flashsci.Plan("cuda").set_shape(2, 512, 512, 8, 8, 128).set_dtype("bfloat16").set_mask("causal")
    assert plan.backend == "cuda" and plan.kernel_name
    out = torch.empty_like(q)
    plan.forward(q, q, q, out)  # the workspace, if any, is allocated by torch
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), sdpa(q, q, q, True).float(), atol=2e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="cpu"):
        plan.forward(q.cpu(), q.cpu(), q.cpu(), out.cpu())


def test_cpu_tensors_use_the_cpu_backend():
    q = torch.randn(1, 16, 2, 8)
    out = flashsci.attention(q, q, q)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, sdpa(q, q, q, False), atol=1e-5, rtol=1e-5)
