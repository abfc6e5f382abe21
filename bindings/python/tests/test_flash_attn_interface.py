"""flashsci.flash_attn_interface: FlashAttention-2's functions and conventions (CPU backend, torch autograd),
against a float64 reference with torch's own autograd."""

import itertools
import math

import pytest

torch = pytest.importorskip("torch")
import flashsci  # noqa: E402
from flashsci.flash_attn_interface import (  # noqa: E402
    flash_attn_func, flash_attn_kvpacked_func, flash_attn_qkvpacked_func, flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func, flash_attn_varlen_qkvpacked_func)
from torch_reference import attention_reference, varlen_reference  # noqa: E402

try:
    flashsci.lib()
except OSError as e:  # not built: say so loudly rather than pass
    pytest.fail(f"libflashsci not found: {e}", pytrace=False)

ATOL = RTOL = 2e-6  # fp32 inputs: the CPU backend computes in fp64 and rounds once


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def reference(q, k, v, dout, **features):
    """(out, lse, (dq, dk, dv)) in float64 through torch autograd, FlashAttention-2's causal (bottom-right)."""
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out, lse = attention_reference(*leaves, alignment="bottom_right", **features)
    out.backward(dout.double())
    return out.detach(), lse.detach(), tuple(t.grad for t in leaves)


def close(got, want):
    torch.testing.assert_close(got.double(), want, atol=ATOL * max(want.abs().max().item(), 1.0), rtol=RTOL)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (17, 17), (129, 17), (17, 129), (1, 129)], ids=str)
def test_flash_attn_func_values_and_gradients(seqlen_q, seqlen_k, causal):
    q, k, v = randn(2, seqlen_q, 6, 32, seed=1), randn(2, seqlen_k, 2, 32, seed=2), randn(2, seqlen_k, 2, 32, seed=3)
    dout = torch.randn(2, seqlen_q, 6, 32)
    out, lse, probs = flash_attn_func(q, k, v, causal=causal, return_attn_probs=True)
    assert out.shape == q.shape and lse.shape == (2, 6, seqlen_q) and lse.dtype == torch.float32 and probs is None
    out.backward(dout)
    ref_out, ref_lse, ref_grads = reference(q, k, v, dout, causal=causal)
    close(out, ref_out)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
    for g, w in zip((q.grad, k.grad, v.grad), ref_grads):
        close(g, w)
    assert isinstance(flash_attn_func(q, k, v, causal=causal), torch.Tensor)


def test_causal_is_bottom_right_as_in_flash_attn():
    # FlashAttention-2's docstring: seqlen_q 2, seqlen_k 5 keeps [[1 1 1 1 0], [1 1 1 1 1]];
    # seqlen_q 5, seqlen_k 2 keeps rows [0 0] x3, [1 0], [1 1] (rows that see nothing give zeros).
    for seqlen_q, seqlen_k, keep in [(2, 5, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
                                     (5, 2, [[0, 0], [0, 0], [0, 0], [1, 0], [1, 1]])]:
        q, k = randn(1, seqlen_q, 1, 8, seed=4), randn(1, seqlen_k, 1, 8, seed=5)
        v = torch.eye(seqlen_k, 8)[None, :, None, :]  # out row i = the attention weights of row i
        weights = flash_attn_func(q, k, v, causal=True)[0, :, 0, :seqlen_k]
        assert torch.equal(weights > 0, torch.tensor(keep, dtype=torch.bool)), weights


def test_window_softcap_alibi_scale_and_gqa():
    q, k, v = randn(2, 40, 4, 16, seed=6), randn(2, 23, 1, 16, seed=7), randn(2, 23, 1, 16, seed=8)
    dout = torch.randn(2, 40, 4, 16)
    slopes = torch.tensor([0.5, 0.25, 0.125, 0.0625])
    for causal, window, softcap, alibi, scale in [(False, (5, 3), 0.0, None, None), (True, (4, -1), 2.0, None, 0.3),
                                                  (False, (-1, -1), 0.0, slopes, None),
                                                  (True, (0, 0), 1.5, slopes, 0.2)]:
        q.grad = k.grad = v.grad = None
        out = flash_attn_func(q, k, v, softmax_scale=scale, causal=causal, window_size=window, softcap=softcap,
                              alibi_slopes=alibi)
        out.backward(dout)
        ref_out, _, ref_grads = reference(q, k, v, dout, causal=causal, window=window, softcap=softcap,
                                          alibi_slopes=alibi, scale=scale)
        close(out, ref_out)
        for g, w in zip((q.grad, k.grad, v.grad), ref_grads):
            close(g, w)


def test_negative_window_sides_and_softcap_are_off_as_in_flash_attn():
    q, k, v = randn(1, 19, 2, 16, seed=29), randn(1, 23, 2, 16, seed=30), randn(1, 23, 2, 16, seed=31)
    want = flash_attn_func(q, k, v, window_size=(-1, 3))
    torch.testing.assert_close(flash_attn_func(q, k, v, window_size=(-5, 3), softcap=-1.0), want, atol=0, rtol=0)
    torch.testing.assert_close(flash_attn_func(q, k, v, window_size=[-1, 3], softcap=0.0), want, atol=0, rtol=0)


def test_per_batch_alibi_slopes():
    q, k, v = randn(3, 9, 2, 8, seed=9), randn(3, 11, 2, 8, seed=10), randn(3, 11, 2, 8, seed=11)
    dout = torch.randn(3, 9, 2, 8)
    slopes = torch.tensor([[0.5, 0.1], [0.2, 0.3], [0.0, 1.0]])
    out, lse, _ = flash_attn_func(q, k, v, causal=True, alibi_slopes=slopes, return_attn_probs=True)
    out.backward(dout)
    assert lse.shape == (3, 2, 9)
    for b in range(3):
        ref_out, ref_lse, ref_grads = reference(q[b:b + 1], k[b:b + 1], v[b:b + 1], dout[b:b + 1], causal=True,
                                                alibi_slopes=slopes[b])
        close(out[b:b + 1], ref_out)
        torch.testing.assert_close(lse[b:b + 1].double(), ref_lse, atol=1e-5, rtol=1e-5)
        for g, w in zip((q.grad, k.grad, v.grad), ref_grads):
            close(g[b:b + 1], w)


def test_head_dim_not_a_multiple_of_8_is_padded():
    q, k, v = randn(1, 13, 2, 12, seed=12), randn(1, 13, 2, 12, seed=13), randn(1, 13, 2, 12, seed=14)
    dout = torch.randn(1, 13, 2, 12)
    out = flash_attn_func(q, k, v, causal=True)
    assert out.shape == (1, 13, 2, 12)
    out.backward(dout)
    ref_out, _, ref_grads = reference(q, k, v, dout, causal=True)  # scale 1/sqrt(12), as flash_attn's default
    close(out, ref_out)
    for g, w in zip((q.grad, k.grad, v.grad), ref_grads):
        assert g.shape == w.shape
        close(g, w)


def test_qkvpacked_gradient_is_packed():
    qkv = randn(2, 33, 3, 4, 16, seed=15)
    dout = torch.randn(2, 33, 4, 16)
    out, lse, _ = flash_attn_qkvpacked_func(qkv, causal=True, return_attn_probs=True)
    assert out.shape == (2, 33, 4, 16) and lse.shape == (2, 4, 33)
    out.backward(dout)
    assert qkv.grad.shape == qkv.shape
    ref_out, _, ref_grads = reference(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dout, causal=True)
    close(out, ref_out)
    close(qkv.grad, torch.stack(ref_grads, dim=2))


def test_kvpacked_gradient_is_packed():
    q, kv = randn(2, 17, 4, 16, seed=16), randn(2, 29, 2, 2, 16, seed=17)
    dout = torch.randn(2, 17, 4, 16)
    out = flash_attn_kvpacked_func(q, kv, causal=True, window_size=(8, 0))
    out.backward(dout)
    assert kv.grad.shape == kv.shape
    ref_out, _, (dq, dk, dv) = reference(q, kv[:, :, 0], kv[:, :, 1], dout, causal=True, window=(8, 0))
    close(out, ref_out)
    close(q.grad, dq)
    close(kv.grad, torch.stack((dk, dv), dim=2))


def cumulative(lens):
    return [0] + list(itertools.accumulate(lens))


LENS_Q = [5, 0, 17, 1, 40]  # an empty sequence
LENS_K = [9, 3, 17, 20, 2]


def varlen_reference_grads(tensors, dout, starts_q, starts_k, **features):
    leaves = [t.detach().double().requires_grad_() for t in tensors]
    out, lse = varlen_reference(*leaves, starts_q, starts_k, alignment="bottom_right", **features)
    out.backward(dout.double())
    return out.detach(), lse.detach(), tuple(t.grad for t in leaves)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_varlen_func(causal):
    starts_q, starts_k = cumulative(LENS_Q), cumulative(LENS_K)
    q, k, v = randn(starts_q[-1], 4, 16, seed=18), randn(starts_k[-1], 2, 16, seed=19), randn(starts_k[-1], 2, 16,
                                                                                               seed=20)
    dout = torch.randn(q.shape)
    cu_q, cu_k = (torch.tensor(s, dtype=torch.int32) for s in (starts_q, starts_k))
    out, lse, probs = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(LENS_Q), max(LENS_K), causal=causal,
                                             return_attn_probs=True)
    assert out.shape == q.shape and lse.shape == (4, starts_q[-1]) and probs is None
    out.backward(dout)
    ref_out, ref_lse, ref_grads = varlen_reference_grads((q, k, v), dout, starts_q, starts_k, causal=causal)
    close(out, ref_out)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
    for g, w in zip((q.grad, k.grad, v.grad), ref_grads):
        close(g, w)


def test_varlen_packed_gradients_are_packed():
    starts = cumulative(LENS_Q)
    cu = torch.tensor(starts, dtype=torch.int32)
    qkv = randn(starts[-1], 3, 2, 16, seed=21)
    dout = torch.randn(starts[-1], 2, 16)
    out = flash_attn_varlen_qkvpacked_func(qkv, cu, max(LENS_Q), causal=True)
    out.backward(dout)
    ref_out, _, grads = varlen_reference_grads(qkv.unbind(1), dout, starts, starts, causal=True)
    close(out, ref_out)
    close(qkv.grad, torch.stack(grads, dim=1))

    starts_k = cumulative(LENS_K)
    cu_k = torch.tensor(starts_k, dtype=torch.int32)
    q, kv = randn(starts[-1], 4, 16, seed=22), randn(starts_k[-1], 2, 2, 16, seed=23)
    dout = torch.randn(q.shape)
    out = flash_attn_varlen_kvpacked_func(q, kv, cu, cu_k, max(LENS_Q), max(LENS_K), window_size=(3, 2))
    out.backward(dout)
    ref_out, _, (dq, dk, dv) = varlen_reference_grads((q, kv[:, 0], kv[:, 1]), dout, starts, starts_k,
                                                      window=(3, 2))
    close(out, ref_out)
    close(q.grad, dq)
    close(kv.grad, torch.stack((dk, dv), dim=1))


@pytest.mark.parametrize("packing", ["separate", "kvpacked", "qkvpacked"])
def test_varlen_per_sequence_alibi_slopes(packing):
    lens_q = [4, 0, 9, 3]
    lens_k = lens_q if packing == "qkvpacked" else [6, 2, 9, 0]  # a sequence without keys
    starts_q, starts_k = cumulative(lens_q), cumulative(lens_k)
    cu_q, cu_k = (torch.tensor(s, dtype=torch.int32) for s in (starts_q, starts_k))
    slopes = torch.tensor([[0.5, 0.1], [0.2, 0.3], [0.0, 1.0], [0.7, 0.7]])
    total_q = starts_q[-1] + 2  # two rows past the last sequence
    q, k, v = randn(total_q, 2, 8, seed=32), randn(starts_k[-1], 2, 8, seed=33), randn(starts_k[-1], 2, 8, seed=34)
    dout = torch.randn(total_q, 2, 8)
    if packing == "separate":
        leaves = (q, k, v)
        out, lse, _ = flash_attn_varlen_func(q, k, v, cu_q, cu_k, 9, 9, causal=True, alibi_slopes=slopes,
                                             return_attn_probs=True)
    elif packing == "kvpacked":
        kv = torch.stack((k, v), dim=1).detach().requires_grad_()
        leaves = (q, kv)
        out, lse, _ = flash_attn_varlen_kvpacked_func(q, kv, cu_q, cu_k, 9, 9, causal=True, alibi_slopes=slopes,
                                                      return_attn_probs=True)
    else:
        qkv = torch.stack((q[:starts_q[-1]], k, v), dim=1).detach().requires_grad_()
        leaves = (qkv,)
        total_q = starts_q[-1]
        dout = dout[:total_q]
        out, lse, _ = flash_attn_varlen_qkvpacked_func(qkv, cu_q, 9, causal=True, alibi_slopes=slopes,
                                                       return_attn_probs=True)
    assert out.shape == (total_q, 2, 8) and lse.shape == (2, total_q)
    out.backward(dout)
    refs = [t.detach().double().requires_grad_() for t in leaves]
    rq, rk, rv = (refs[0], refs[1], refs[2]) if packing == "separate" else \
        (refs[0], refs[1][:, 0], refs[1][:, 1]) if packing == "kvpacked" else refs[0].unbind(1)
    for b in range(len(lens_q)):
        rows, keys = slice(starts_q[b], starts_q[b + 1]), slice(starts_k[b], starts_k[b + 1])
        if lens_q[b] == 0:
            continue
        o, l = attention_reference(rq[None, rows], rk[None, keys], rv[None, keys], causal=True,
                                   alignment="bottom_right", alibi_slopes=slopes[b])
        close(out[rows][None], o.detach())
        torch.testing.assert_close(lse[:, rows].double(), l[0].detach(), atol=1e-5, rtol=1e-5)
        (o * dout[rows][None].double()).sum().backward()
    assert torch.all(out[starts_q[-1]:] == 0)
    for got, ref in zip(leaves, refs):
        close(got.grad, ref.grad)


def test_dropout_and_paged_kv_are_not_implemented():
    q = randn(1, 8, 2, 16, seed=24)
    with pytest.raises(NotImplementedError, match="dropout_p=0.1"):
        flash_attn_func(q, q, q, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="dropout"):
        flash_attn_qkvpacked_func(torch.stack([q, q, q], dim=2), 0.5)
    cu = torch.tensor([0, 8], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="block_table"):
        flash_attn_varlen_func(q[0], q[0], q[0], cu, cu, 8, 8, block_table=torch.zeros(1, 1, dtype=torch.int32))
    flash_attn_func(q, q, q, 0.0)  # dropout_p is the fourth positional argument, as in flash_attn


def test_deterministic_gradients_repeat_bit_for_bit():
    q, k, v = randn(2, 65, 4, 32, seed=25), randn(2, 70, 2, 32, seed=26), randn(2, 70, 2, 32, seed=27)
    dout = torch.randn(2, 65, 4, 32)
    grads = [torch.autograd.grad(flash_attn_func(q, k, v, causal=True, deterministic=True), (q, k, v), dout)
             for _ in range(2)]
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_default_scale_and_bf16():
    g = torch.Generator().manual_seed(28)
    q, k, v = (torch.randn(1, 24, 2, 64, generator=g).bfloat16().requires_grad_() for _ in range(3))
    dout = torch.randn(1, 24, 2, 64, generator=g).bfloat16()
    out = flash_attn_func(q, k, v)
    assert out.dtype == torch.bfloat16
    out.backward(dout)
    ref_out, _, ref_grads = reference(q, k, v, dout, scale=1 / math.sqrt(64))
    for got, want in [(out, ref_out)] + list(zip((q.grad, k.grad, v.grad), ref_grads)):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.double(), want, atol=2e-2 * max(want.abs().max().item(), 1.0), rtol=2e-2)
