"""Gradients of flashsci.attention() and flashsci.forward_varlen() (torch autograd, CPU backend) against torch's
own autograd through a float64 reference."""

import itertools

import pytest

torch = pytest.importorskip("torch")
import flashsci  # noqa: E402
from torch_reference import attention_reference, varlen_reference  # noqa: E402

try:
    flashsci.lib()
except OSError as e:  # not built: say so loudly rather than pass
    pytest.fail(f"libflashsci not found: {e}", pytrace=False)

MASKS = {"none": dict(causal=False), "causal": dict(causal=True, causal_alignment="top_left"),
         "bottom_right": dict(causal=True, causal_alignment="bottom_right")}
# The reference's spelling of the same mask.
REFERENCE_MASKS = {"none": dict(causal=False), "causal": dict(causal=True, alignment="top_left"),
                   "bottom_right": dict(causal=True, alignment="bottom_right")}


def tolerance(dtype, ref):
    """(atol, rtol) for a gradient of the given input dtype, relative to the reference's largest magnitude.
    fp32: the CPU backend computes in fp64 and rounds once; bf16: 8 bits of mantissa in inputs and gradients."""
    magnitude = max(ref.abs().max().item(), 1.0)
    return (2e-6 * magnitude, 2e-6) if dtype == torch.float32 else (2e-2 * magnitude, 2e-2)


def inputs(batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seqlen_q, heads_q, head_dim, generator=g).to(dtype).requires_grad_()
    k = torch.randn(batch, seqlen_k, heads_kv, head_dim, generator=g).to(dtype).requires_grad_()
    v = torch.randn(batch, seqlen_k, heads_kv, head_dim, generator=g).to(dtype).requires_grad_()
    dout = torch.randn(batch, seqlen_q, heads_q, head_dim, generator=g).to(dtype)
    return q, k, v, dout


def reference_grads(q, k, v, dout, **features):
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    out, lse = attention_reference(qd, kd, vd, **features)
    out.backward(dout.double())
    return out.detach(), lse.detach(), (qd.grad, kd.grad, vd.grad)


def assert_grads_close(got, want, dtype):
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        assert g is not None and g.dtype == dtype and g.shape == w.shape, name
        atol, rtol = tolerance(dtype, w)
        torch.testing.assert_close(g.double(), w, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


SEQLENS = [(1, 1), (17, 17), (129, 129), (17, 129), (129, 17), (1, 17)]


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("seqlen_q,seqlen_k", SEQLENS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gradients_match_fp64_autograd(dtype, seqlen_q, seqlen_k, mask):
    q, k, v, dout = inputs(2, seqlen_q, seqlen_k, 4, 2, 32, dtype, seed=seqlen_q * 1000 + seqlen_k)
    out = flashsci.attention(q, k, v, **MASKS[mask])
    out.backward(dout)
    ref_out, _, ref_grads = reference_grads(q, k, v, dout, **REFERENCE_MASKS[mask])
    atol, rtol = tolerance(dtype, ref_out)
    torch.testing.assert_close(out.detach().double(), ref_out, atol=atol, rtol=rtol)
    assert_grads_close((q.grad, k.grad, v.grad), ref_grads, dtype)


FEATURES = [dict(window=(5, 3)), dict(window=(-1, 2), softcap=2.0), dict(alibi_slopes=[0.5, 0.25, 0.125, 0.0625]),
            dict(window=(0, 0), softcap=1.5, alibi_slopes=[0.5, 0.25, 0.125, 0.0625]), dict(scale=0.3, softcap=0.8)]


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("features", FEATURES, ids=lambda f: "-".join(sorted(f)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_window_softcap_alibi_gradients(dtype, features, mask):
    q, k, v, dout = inputs(2, 40, 23, 4, 2, 16, dtype, seed=len(str(features)))
    out = flashsci.attention(q, k, v, **MASKS[mask], **features)
    out.backward(dout)
    _, _, ref_grads = reference_grads(q, k, v, dout, **REFERENCE_MASKS[mask], **features)
    assert_grads_close((q.grad, k.grad, v.grad), ref_grads, dtype)


def test_mqa_head_dim_128_and_rows_without_keys():
    # bottom-right causal with seqlen_q > seqlen_k: the first rows see no key (out 0, dq 0)
    q, k, v, dout = inputs(1, 33, 9, 6, 1, 128, torch.float32, seed=5)
    out = flashsci.attention(q, k, v, causal=True, causal_alignment="bottom_right")
    out.backward(dout)
    assert torch.all(out[:, :24] == 0) and torch.all(q.grad[:, :24] == 0)
    _, _, ref_grads = reference_grads(q, k, v, dout, causal=True, alignment="bottom_right")
    assert_grads_close((q.grad, k.grad, v.grad), ref_grads, torch.float32)


def test_strided_inputs_and_an_expanded_dout():
    g = torch.Generator().manual_seed(9)
    # [batch, heads, seqlen, head_dim] tensors seen as [batch, seqlen, heads, head_dim]; packed k/v views
    q = torch.randn(2, 4, 31, 16, generator=g).requires_grad_()
    kv = torch.randn(2, 19, 2, 2, 16, generator=g).requires_grad_()
    qt, k, v = q.transpose(1, 2), kv[:, :, 0], kv[:, :, 1]
    out = flashsci.attention(qt, k, v, causal=True)
    out.sum().backward()  # dout: ones expanded to the shape, zero strides
    qd, kvd = q.detach().double().requires_grad_(), kv.detach().double().requires_grad_()
    ref, _ = attention_reference(qd.transpose(1, 2), kvd[:, :, 0], kvd[:, :, 1], causal=True)
    ref.sum().backward()
    for got, want in ((q.grad, qd.grad), (kv.grad, kvd.grad)):
        atol, rtol = tolerance(torch.float32, want)
        torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol)


def test_grad_only_where_required_and_lse_is_not_differentiable():
    q, k, v, dout = inputs(1, 17, 17, 2, 2, 8, torch.float32, seed=3)
    k.requires_grad_(False)
    v.requires_grad_(False)
    out, lse = flashsci.attention(q, k, v, return_lse=True)
    assert out.requires_grad and not lse.requires_grad and lse.shape == (1, 2, 17)
    (dq,) = torch.autograd.grad(out, q, dout)
    _, ref_lse, ref_grads = reference_grads(q, k, v, dout)
    atol, rtol = tolerance(torch.float32, ref_grads[0])
    torch.testing.assert_close(dq.double(), ref_grads[0], atol=atol, rtol=rtol)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
    assert k.grad is None and v.grad is None


def test_no_grad_mode_and_plain_tensors_are_not_recorded():
    q, k, v, _ = inputs(1, 8, 8, 2, 2, 8, torch.float32, seed=4)
    with torch.no_grad():
        assert not flashsci.attention(q, k, v).requires_grad
    out = torch.empty(q.shape)
    assert flashsci.attention(q.detach(), k.detach(), v.detach(), out=out) is out


def test_double_backward_and_out_argument_are_refused():
    q, k, v, dout = inputs(1, 8, 8, 2, 2, 8, torch.float32, seed=6)
    w = torch.ones(1, requires_grad=True)
    for grad_output in (dout, dout.clone().requires_grad_()):
        out = flashsci.attention(q, k, v)
        (dq,) = torch.autograd.grad(out, q, grad_output, create_graph=True)
        with pytest.raises(RuntimeError, match="double backward"):  # never a silent zero second derivative
            ((dq * dq).sum() + w.sum()).backward()
    with pytest.raises(RuntimeError, match="out="):
        flashsci.attention(q, k, v, out=torch.empty(q.shape))


def test_deterministic_gradients_repeat_bit_for_bit():
    q, k, v, dout = inputs(2, 65, 70, 4, 2, 32, torch.float32, seed=8)
    grads = []
    for _ in range(2):
        out = flashsci.attention(q, k, v, causal=True, deterministic=True)
        grads.append(torch.autograd.grad(out, (q, k, v), dout))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def cumulative(lens):
    return [0] + list(itertools.accumulate(lens))


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_varlen_gradients_per_sequence_with_an_empty_one(dtype, mask):
    lens_q = [1, 17, 0, 129, 5]
    lens_k = [17, 1, 3, 129, 5] if mask == "bottom_right" else lens_q
    g = torch.Generator().manual_seed(11)
    total_q, total_k = sum(lens_q) + 3, sum(lens_k)  # three rows past the last sequence
    q = torch.randn(total_q, 4, 16, generator=g).to(dtype).requires_grad_()
    k = torch.randn(total_k, 2, 16, generator=g).to(dtype).requires_grad_()
    v = torch.randn(total_k, 2, 16, generator=g).to(dtype).requires_grad_()
    dout = torch.randn(total_q, 4, 16, generator=g).to(dtype)
    starts_q, starts_k = cumulative(lens_q), cumulative(lens_k)
    cu_q, cu_k = (torch.tensor(s, dtype=torch.int32) for s in (starts_q, starts_k))
    out, lse = flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), return_lse=True,
                                       **MASKS[mask])
    assert lse.shape == (4, total_q) and not lse.requires_grad
    out.backward(dout)
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref_out, ref_lse = varlen_reference(qd, kd, vd, starts_q, starts_k, **REFERENCE_MASKS[mask])
    ref_out.backward(dout.double())
    atol, rtol = tolerance(dtype, ref_out)
    torch.testing.assert_close(out.detach().double(), ref_out, atol=atol, rtol=rtol)
    used = starts_q[-1]
    torch.testing.assert_close(lse[:, :used].double(), ref_lse[:, :used], atol=1e-4, rtol=1e-4)
    assert_grads_close((q.grad, k.grad, v.grad), (qd.grad, kd.grad, vd.grad), dtype)
