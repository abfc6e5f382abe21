"""The binding on CUDA with torch tensors, against torch SDPA (skipped without a CUDA torch).

Run on a GPU machine:  FLASHSCI_LIBRARY=build/libflashsci.so python3 -m pytest bindings/python/tests
"""

import itertools
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


# Variable-length batches: lengths 1 to 300 (and one sequence without queries) packed along one token axis, GQA 8:2.
VARLEN_Q = [1, 17, 127, 129, 0, 300, 64]
VARLEN_K_BOTTOM_RIGHT = [17, 1, 129, 127, 5, 300, 100]  # other key counts: bottom-right causal aligns each sequence's ends


def cumulative(lens):
    return [0] + list(itertools.accumulate(lens))


@pytest.mark.parametrize("alignment", [None, "top_left", "bottom_right"], ids=["full", "causal", "bottom_right"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=lambda x: str(x)[6:])
def test_varlen_matches_sdpa_per_sequence(dtype, alignment):
    lens_q = VARLEN_Q
    lens_k = VARLEN_K_BOTTOM_RIGHT if alignment == "bottom_right" else VARLEN_Q
    heads_q, heads_kv, head_dim = 8, 2, 64
    g = torch.Generator(device="cuda").manual_seed(7)
    q = torch.randn(sum(lens_q), heads_q, head_dim, device="cuda", dtype=dtype, generator=g)
    k, v = (torch.randn(sum(lens_k), heads_kv, head_dim, device="cuda", dtype=dtype, generator=g) for _ in range(2))
    starts_q, starts_k = cumulative(lens_q), cumulative(lens_k)
    cu_q, cu_k = (torch.tensor(s, dtype=torch.int32, device="cuda") for s in (starts_q, starts_k))
    out, lse = flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=alignment is not None,
                                       causal_alignment=alignment or "top_left", return_lse=True)
    torch.cuda.synchronize()
    assert out.dtype == dtype and out.shape == q.shape and lse.shape == (heads_q, q.shape[0])
    group = heads_q // heads_kv
    for b, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        if lq == 0:
            continue
        rows, keys = slice(starts_q[b], starts_q[b] + lq), slice(starts_k[b], starts_k[b] + lk)
        qb = q[rows].transpose(0, 1)  # [heads_q, lq, d]
        kb, vb = (t[keys].repeat_interleave(group, dim=1).transpose(0, 1) for t in (k, v))
        keep = torch.ones(lq, lk, dtype=torch.bool, device="cuda")
        if alignment is not None:
            keep = keep.tril(0 if alignment == "top_left" else lk - lq)
        sees = keep.any(dim=1)  # rows that see no key: O = 0, LSE = -inf
        ref = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=keep).transpose(0, 1)  # [lq, heads_q, d]
        got = out[rows]
        atol, rtol = tolerance(dtype, ref[sees]) if dtype != torch.float16 else (1e-2, 1e-2)
        torch.testing.assert_close(got[sees].float(), ref[sees].float(), atol=atol, rtol=rtol, msg=f"sequence {b}")
        assert torch.all(got[~sees] == 0)
        s = (qb.double() @ kb.double().transpose(-1, -2)) / math.sqrt(head_dim)
        ref_lse = torch.logsumexp(s.masked_fill(~keep, -math.inf), dim=-1)  # [heads_q, lq]
        torch.testing.assert_close(lse[:, rows].double(), ref_lse, atol=1e-3, rtol=1e-4, msg=f"sequence {b} lse")


def test_varlen_packed_qkv_in_a_cuda_graph():
    lens = [33, 1, 257, 64]
    qkv = torch.randn(sum(lens), 3, 4, 128, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # strided views
    cu = torch.tensor(cumulative(lens), dtype=torch.int32, device="cuda")
    out = torch.empty_like(q)
    fwd = flashsci.prepare_varlen(q, k, v, cu, cu, max(lens), max(lens), causal=True, out=out)
    assert fwd.plan.kernel_name  # the general path, or the Hopper path where it runs varlen batches
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        fwd.args = fwd.args[:-1] + (stream.cuda_stream,)
        assert fwd() == 0
    graph.replay()
    torch.cuda.synchronize()
    starts = cumulative(lens)
    for b, n in enumerate(lens):
        rows = slice(starts[b], starts[b] + n)
        ref = F.scaled_dot_product_attention(q[rows].transpose(0, 1), k[rows].transpose(0, 1),
                                             v[rows].transpose(0, 1), is_causal=True).transpose(0, 1)
        torch.testing.assert_close(out[rows].float(), ref.float(), atol=2e-2, rtol=1e-2)


def test_varlen_offsets_must_be_int32_on_the_device():
    q = torch.randn(10, 2, 64, device="cuda", dtype=torch.float16)
    with pytest.raises(TypeError, match="int32"):
        flashsci.forward_varlen(q, q, q, torch.tensor([0, 10], device="cuda"), torch.tensor([0, 10], device="cuda"),
                                10, 10)
    cpu = torch.tensor([0, 10], dtype=torch.int32)
    with pytest.raises(ValueError, match="cu_seqlens_q is in cpu memory"):
        flashsci.forward_varlen(q, q, q, cpu, cpu.cuda(), 10, 10)
