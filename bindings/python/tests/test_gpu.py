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


# ---- Backward: autograd, flashsci.backward() and the flash-attn drop-in on CUDA ---------------------------------

from torch_reference import attention_reference, varlen_reference  # noqa: E402


def within_twice_torch_error(name, got, ref64, ref_same_dtype):
    """got's largest error against fp64 at most twice that of torch's own math in the inputs' dtype (as
    FlashAttention-2's tests check), plus a floor for where torch is exact."""
    err = (got.double() - ref64).abs().max().item()
    torch_err = (ref_same_dtype.double() - ref64).abs().max().item()
    floor = 1e-5 * max(ref64.abs().max().item(), 1.0)
    assert err <= 2 * torch_err + floor, f"{name}: max error {err:.3g}, torch's in that dtype {torch_err:.3g}"


def reference_pair(tensors, dout, reference, *args, **features):
    """(out, grads) of `reference` in fp64 and in the tensors' own dtype (fp32 for fp32), through torch autograd."""
    results = []
    for dtype in (torch.float64, tensors[0].dtype):
        leaves = [t.detach().to(dtype).requires_grad_() for t in tensors]
        out = reference(*leaves, *args, dtype=dtype, **features)[0]
        out.backward(dout.to(dtype))
        results.append((out.detach(), [t.grad for t in leaves]))
    return results


BWD_CASES = [(torch.bfloat16, 17, 129, 64), (torch.float16, 129, 17, 128), (torch.bfloat16, 256, 256, 128),
             (torch.float32, 129, 129, 64), (torch.float32, 1, 300, 256)]


@pytest.mark.parametrize("mask", ["none", "top_left", "bottom_right"])
@pytest.mark.parametrize("dtype,seqlen_q,seqlen_k,head_dim", BWD_CASES, ids=lambda x: str(x).replace("torch.", ""))
def test_autograd_gradients_on_cuda(dtype, seqlen_q, seqlen_k, head_dim, mask):
    g = torch.Generator(device="cuda").manual_seed(seqlen_q + seqlen_k + head_dim)
    q = torch.randn(2, seqlen_q, 8, head_dim, device="cuda", dtype=dtype, generator=g, requires_grad=True)
    k, v = (torch.randn(2, seqlen_k, 2, head_dim, device="cuda", dtype=dtype, generator=g, requires_grad=True)
            for _ in range(2))
    dout = torch.randn(2, seqlen_q, 8, head_dim, device="cuda", dtype=dtype, generator=g)
    causal = mask != "none"
    alignment = mask if causal else "top_left"
    out = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment)
    out.backward(dout)
    torch.cuda.synchronize()
    (ref_out, ref_grads), (low_out, low_grads) = reference_pair((q, k, v), dout, attention_reference, causal=causal,
                                                                alignment=alignment)
    within_twice_torch_error("out", out, ref_out, low_out)
    for name, got, ref, low in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), ref_grads, low_grads):
        assert got.dtype == dtype and got.shape == ref.shape
        within_twice_torch_error(name, got, ref, low)


def test_window_softcap_alibi_gradients_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(2)
    q = torch.randn(2, 200, 4, 64, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    k, v = (torch.randn(2, 150, 2, 64, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
            for _ in range(2))
    dout = torch.randn(2, 200, 4, 64, device="cuda", dtype=torch.bfloat16, generator=g)
    features = dict(window=(40, 7), softcap=5.0, alibi_slopes=[0.5, 0.25, 0.125, 0.0625])
    out = flashsci.attention(q, k, v, causal=True, causal_alignment="bottom_right", **features)
    out.backward(dout)
    (ref_out, ref_grads), (low_out, low_grads) = reference_pair((q, k, v), dout, attention_reference, causal=True,
                                                                alignment="bottom_right", **features)
    within_twice_torch_error("out", out, ref_out, low_out)
    for name, got, ref, low in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), ref_grads, low_grads):
        within_twice_torch_error(name, got, ref, low)


def test_backward_runs_on_torch_current_stream_with_a_device_workspace():
    q = torch.randn(1, 256, 4, 64, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out, lse = flashsci.attention(q, q, q, causal=True, return_lse=True)
        bwd = flashsci.prepare_backward(q, q, q, out, torch.ones_like(out), lse, causal=True)
        assert bwd.args[-1] == side.cuda_stream
        if bwd.workspace is not None:
            assert bwd.workspace.device == q.device and bwd.workspace.dtype == torch.uint8
        assert bwd() == 0
    side.synchronize()
    qd = q.detach().double().requires_grad_()
    ref, _ = attention_reference(qd, qd, qd, causal=True)
    ref.sum().backward()
    got = bwd.dq.double() + bwd.dk.double() + bwd.dv.double()  # q is q, k and v: its gradient is the sum
    torch.testing.assert_close(got, qd.grad, atol=3e-2 * qd.grad.abs().max().item(), rtol=3e-2)


def test_deterministic_gradients_on_cuda_repeat_bit_for_bit():
    g = torch.Generator(device="cuda").manual_seed(3)
    q = torch.randn(2, 1000, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    k, v = (torch.randn(2, 1000, 2, 128, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
            for _ in range(2))
    dout = torch.randn(2, 1000, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    from flashsci.flash_attn_interface import flash_attn_func

    runs = [torch.autograd.grad(flash_attn_func(q, k, v, causal=True, deterministic=True), (q, k, v), dout)
            for _ in range(3)]
    for name, first, *others in zip(("dq", "dk", "dv"), *runs):
        assert all(torch.equal(first, other) for other in others), name


def test_flash_attn_func_matches_sdpa_backward():
    from flashsci.flash_attn_interface import flash_attn_func, flash_attn_qkvpacked_func

    g = torch.Generator(device="cuda").manual_seed(4)
    qkv = torch.randn(2, 512, 3, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    dout = torch.randn(2, 512, 8, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    out, lse, probs = flash_attn_qkvpacked_func(qkv, causal=True, return_attn_probs=True)
    assert lse.shape == (2, 8, 512) and lse.dtype == torch.float32 and probs is None
    out.backward(dout)
    assert qkv.grad.shape == qkv.shape
    ref_qkv = qkv.detach().requires_grad_()
    ref = sdpa(ref_qkv[:, :, 0], ref_qkv[:, :, 1], ref_qkv[:, :, 2], True)
    ref.backward(dout)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=1e-2)
    scale = ref_qkv.grad.abs().max().item()
    torch.testing.assert_close(qkv.grad.float(), ref_qkv.grad.float(), atol=2e-2 * scale, rtol=2e-2)
    q, k, v = (qkv.detach()[:, :, i].clone().requires_grad_() for i in range(3))  # contiguous, unpacked
    flash_attn_func(q, k, v, causal=True).backward(dout)
    torch.testing.assert_close(torch.stack([q.grad, k.grad, v.grad], dim=2).float(), qkv.grad.float(),
                               atol=1e-2 * scale, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_varlen_gradients_on_cuda_with_an_empty_sequence(dtype):
    from flashsci.flash_attn_interface import flash_attn_varlen_func

    lens_q, lens_k = [1, 17, 0, 127, 129, 300], [17, 1, 5, 127, 200, 300]
    starts_q, starts_k = cumulative(lens_q), cumulative(lens_k)
    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(starts_q[-1], 8, 64, device="cuda", dtype=dtype, generator=g, requires_grad=True)
    k, v = (torch.randn(starts_k[-1], 2, 64, device="cuda", dtype=dtype, generator=g, requires_grad=True)
            for _ in range(2))
    dout = torch.randn(q.shape, device="cuda", dtype=dtype, generator=g)
    cu_q, cu_k = (torch.tensor(s, dtype=torch.int32, device="cuda") for s in (starts_q, starts_k))
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True)
    out.backward(dout)
    torch.cuda.synchronize()
    (ref_out, ref_grads), (low_out, low_grads) = reference_pair((q, k, v), dout, varlen_reference, starts_q, starts_k,
                                                                causal=True, alignment="bottom_right")
    within_twice_torch_error("out", out, ref_out, low_out)
    for name, got, ref, low in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), ref_grads, low_grads):
        within_twice_torch_error(name, got, ref, low)


def test_plan_backward_on_cuda_against_the_cpu_backend():
    q, k, v, dout = (torch.randn(2, 128, 4, 64, device="cuda", dtype=torch.float16) for _ in range(4))
    plan = flashsci.Plan("cuda").set_shape(2, 128, 128, 4, 4, 64).set_dtype("float16").set_mask("causal")
    out, lse = torch.empty_like(q), torch.empty(2, 4, 128, device="cuda")
    plan.forward(q, k, v, out, lse)
    dq, dk, dv = (torch.full_like(x, float("nan")) for x in (q, k, v))
    plan.backward(q, k, v, out, dout, lse, dq, dk, dv)  # the workspace, if any, allocated by torch
    torch.cuda.synchronize()
    want = flashsci.backward(q.cpu().float(), k.cpu().float(), v.cpu().float(), out.cpu().float(),
                             dout.cpu().float(), lse.cpu(), causal=True)
    for got, ref in zip((dq, dk, dv), want):
        torch.testing.assert_close(got.cpu().float(), ref, atol=2e-2 * max(ref.abs().max().item(), 1.0), rtol=2e-2)
