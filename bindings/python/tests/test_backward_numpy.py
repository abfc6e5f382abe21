"""flashsci.backward() and backward_varlen() on the CPU backend with numpy arrays (what CI runs), against the
analytic gradients in fp64, themselves checked against finite differences."""

import numpy as np
import pytest

import flashsci

from test_numpy import bf16_bits, from_bf16, rand, reference

try:
    flashsci.lib()
except OSError as e:  # not built: say so loudly rather than pass
    pytest.fail(f"libflashsci not found: {e}", pytrace=False)

MASKS = {"none": (False, "top_left"), "causal": (True, "top_left"), "causal_bottom_right": (True, "bottom_right")}


def scores(q, k, mask, scale, window, softcap, alibi_slopes):
    """[batch, heads_q, seqlen_q, seqlen_k] fp64: the final scores S (-inf where hidden), and dS/dX of the softcap
    (X = scale·q·k; 1 without one)."""
    x = scale * q @ k.transpose(0, 1, 3, 2)
    sq, sk = x.shape[-2:]
    rows, cols = np.arange(sq)[:, None], np.arange(sk)[None, :]
    s, chain = x, np.ones_like(x)
    if softcap > 0:
        t = np.tanh(x / softcap)
        s, chain = softcap * t, 1 - t * t
    if alibi_slopes is not None:
        s = s - np.asarray(alibi_slopes, dtype=np.float64)[:, None, None] * np.abs(rows + sk - sq - cols)
    diagonal = rows + (0 if mask == "causal" else sk - sq)
    keep = np.ones((sq, sk), dtype=bool)
    if mask != "none":
        keep &= cols <= diagonal
    if window[0] >= 0:
        keep &= cols >= diagonal - window[0]
    if window[1] >= 0:
        keep &= cols <= diagonal + window[1]
    return np.where(keep, s, -np.inf), chain


def reference_backward(q, k, v, dout, mask="none", scale=None, window=(-1, -1), softcap=0.0, alibi_slopes=None):
    """(dq, dk, dv) in fp64 of [batch, seqlen, heads, head_dim] arrays: P = softmax(S), dV = Pᵀ dO, dP = dO Vᵀ,
    dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·(dS ∘ chain) K, dK = scale·(dS ∘ chain)ᵀ Q; GQA sums over the
    query heads of a group."""
    q, k, v, dout = (np.asarray(x, dtype=np.float64).transpose(0, 2, 1, 3) for x in (q, k, v, dout))
    group = q.shape[1] // k.shape[1]
    kr, vr = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s, chain = scores(q, kr, mask, scale, window, softcap, alibi_slopes)
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = p.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1), 0.0)
    dv = p.transpose(0, 1, 3, 2) @ dout
    dp = dout @ vr.transpose(0, 1, 3, 2)
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True)) * chain
    dq = scale * ds @ kr
    dk = scale * ds.transpose(0, 1, 3, 2) @ q

    def per_kv_head(x):  # [b, heads_q, s, d] -> [b, s, heads_kv, d], summed over each group
        b, h, n, d = x.shape
        return x.reshape(b, h // group, group, n, d).sum(axis=2).transpose(0, 2, 1, 3)

    return dq.transpose(0, 2, 1, 3), per_kv_head(dk), per_kv_head(dv)


def test_reference_backward_matches_finite_differences():
    # The analytic reference, checked on its own: central differences of L = Σ dO ∘ O in fp64.
    q, k, v, dout = (rand(1, 5, 4, 8, seed=s).astype(np.float64) for s in (1, 2, 3, 4))
    k, v = k[:, :4, :2], v[:, :4, :2]  # seqlen_k 4, GQA 4:2
    features = dict(mask="causal_bottom_right", window=(2, -1), softcap=1.3, alibi_slopes=[0.3, 0.2, 0.1, 0.05])
    grads = reference_backward(q, k, v, dout, **features)

    def loss():
        return float((reference(q, k, v, **features)[0] * dout).sum())

    step = 1e-6
    for x, g in zip((q, k, v), grads):
        numeric = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            keep = x[index]
            x[index] = keep + step
            up = loss()
            x[index] = keep - step
            down = loss()
            x[index] = keep
            numeric[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(g, numeric, atol=1e-7, rtol=1e-6)


def check(got, want, atol, rtol):
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        scale = max(np.abs(w).max(), 1.0)
        np.testing.assert_allclose(np.asarray(g, dtype=np.float64), w, atol=atol * scale, rtol=rtol, err_msg=name)


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (17, 17), (129, 129), (17, 129), (129, 17), (1, 17)])
def test_fp32_gqa_strided_matches_fp64(seqlen_q, seqlen_k, mask):
    causal, alignment = MASKS[mask]
    q = rand(2, seqlen_q, 4, 16, seed=seqlen_q)
    kv = rand(2, seqlen_k, 2, 2, 16, seed=seqlen_k + 1)  # packed k/v: strided views, GQA 4:2
    k, v = kv[:, :, 0], kv[:, :, 1]
    dout = rand(2, seqlen_q, 4, 16, seed=7)
    out, lse = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True)
    dq, dk, dv = flashsci.backward(q, k, v, out, dout, lse, causal=causal, causal_alignment=alignment)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    assert dq.dtype == dk.dtype == dv.dtype == np.float32
    check((dq, dk, dv), reference_backward(q, k, v, dout, mask), atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("mask", list(MASKS))
def test_window_softcap_alibi_match_fp64(mask):
    q, k, v, dout = rand(2, 40, 4, 16, seed=11), rand(2, 23, 2, 16, seed=12), rand(2, 23, 2, 16, seed=13), \
        rand(2, 40, 4, 16, seed=14)
    causal, alignment = MASKS[mask]
    slopes = [0.5, 0.25, 0.125, 0.0625]
    for window, softcap, alibi in [((5, 3), 0.0, None), ((-1, 2), 2.0, None), ((-1, -1), 0.0, slopes),
                                   ((0, 0), 1.5, slopes)]:
        features = dict(window=window, softcap=softcap, alibi_slopes=alibi, scale=0.2)
        out, lse = flashsci.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True, **features)
        got = flashsci.backward(q, k, v, out, dout, lse, causal=causal, causal_alignment=alignment, **features)
        check(got, reference_backward(q, k, v, dout, mask, **features), atol=2e-6, rtol=2e-6)


def test_gradient_arrays_are_overwritten_and_returned():
    q, k, v, dout = (rand(1, 33, 2, 32, seed=s) for s in (20, 21, 22, 23))
    out, lse = flashsci.attention(q, k, v, causal=True, return_lse=True)
    dq, dk, dv = (np.full_like(x, np.nan) for x in (q, k, v))
    got = flashsci.backward(q, k, v, out, dout, lse, causal=True, dq=dq, dk=dk, dv=dv)
    assert got[0] is dq and got[1] is dk and got[2] is dv
    check(got, reference_backward(q, k, v, dout, "causal"), atol=2e-6, rtol=2e-6)


def test_float16_and_bfloat16_bits():
    qf, kf, vf, df = (rand(1, 40, 2, 32, seed=s) for s in (30, 31, 32, 33))
    q, k, v, dout = (x.astype(np.float16) for x in (qf, kf, vf, df))
    out, lse = flashsci.attention(q, k, v, causal=True, return_lse=True)
    grads = flashsci.backward(q, k, v, out, dout, lse, causal=True)
    assert all(g.dtype == np.float16 for g in grads)
    check(grads, reference_backward(q, k, v, dout, "causal"), atol=1e-2, rtol=1e-2)

    q, k, v, dout = (bf16_bits(x) for x in (qf, kf, vf, df))
    out, lse = flashsci.attention(q, k, v, dtype="bfloat16", return_lse=True)
    grads = flashsci.backward(q, k, v, out, dout, lse, dtype="bfloat16")
    assert all(g.dtype == np.uint16 for g in grads)
    want = reference_backward(*(from_bf16(x) for x in (q, k, v, dout)))
    check([from_bf16(g) for g in grads], want, atol=2e-2, rtol=2e-2)


def test_deterministic_repeats_bit_for_bit():
    q, k, v, dout = rand(2, 70, 4, 32, seed=40), rand(2, 65, 1, 32, seed=41), rand(2, 65, 1, 32, seed=42), \
        rand(2, 70, 4, 32, seed=43)
    out, lse = flashsci.attention(q, k, v, return_lse=True)
    first = flashsci.backward(q, k, v, out, dout, lse, deterministic=True)
    second = flashsci.backward(q, k, v, out, dout, lse, deterministic=True)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_argument_errors_before_the_library():
    q, dout = rand(1, 8, 2, 8, seed=50), rand(1, 8, 2, 8, seed=51)
    out, lse = flashsci.attention(q, q, q, return_lse=True)
    with pytest.raises(ValueError, match="lse"):
        flashsci.backward(q, q, q, out, dout, lse[:, :, :4])
    with pytest.raises(ValueError, match="lse"):
        flashsci.backward(q, q, q, out, dout, lse.astype(np.float16))
    with pytest.raises(ValueError, match="dout must match q"):
        flashsci.backward(q, q, q, out, dout[:, :4], lse)
    with pytest.raises(ValueError, match="out is required"):
        flashsci.backward(q, q, q, None, dout, lse)
    with pytest.raises(ValueError, match="dk must match k"):
        flashsci.backward(q, q, q, out, dout, lse, dk=np.empty((1, 8, 1, 8), np.float32))
    ro = np.zeros_like(q)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        flashsci.backward(q, q, q, out, dout, lse, dv=ro)


def test_reusable_plan_backward():
    shape = (2, 16, 24, 4, 2, 32)
    q, k, v, dout = rand(2, 16, 4, 32, seed=60), rand(2, 24, 2, 32, seed=61), rand(2, 24, 2, 32, seed=62), \
        rand(2, 16, 4, 32, seed=63)
    with flashsci.Plan("cpu") as plan:
        plan.set_shape(*shape).set_dtype("fp32").set_mask("causal_bottom_right").set_deterministic(True)
        assert plan.backward_workspace_size >= 0
        out, lse = np.empty_like(q), np.empty((2, 4, 16), np.float32)
        plan.forward(q, k, v, out, lse)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        got = plan.backward(q, k, v, out, dout, lse, dq, dk, dv)
        assert got[0] is dq and got[1] is dk and got[2] is dv
        check((dq, dk, dv), reference_backward(q, k, v, dout, "causal_bottom_right"), atol=2e-6, rtol=2e-6)
        with pytest.raises(ValueError, match="lse"):
            plan.backward(q, k, v, out, dout, None, dq, dk, dv)
        with pytest.raises(ValueError, match="dk has shape"):
            plan.backward(q, k, v, out, dout, lse, dq, dq, dv)
        with pytest.raises(ValueError, match="backward_varlen"):
            plan.set_varlen_shape(2, 32, 48, 16, 24, 4, 2, 32).backward(q, k, v, out, dout, lse, dq, dk, dv)


# Lengths 1, 17, 40 and 129 queries; a sequence without queries, one without keys; fewer keys than queries and more.
LENS_Q = [1, 17, 0, 40, 129, 9]
LENS_K = [17, 1, 5, 0, 129, 30]


def offsets(lens):
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)


@pytest.mark.parametrize("mask", list(MASKS))
def test_varlen_matches_fp64_per_sequence(mask):
    causal, alignment = MASKS[mask]
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    spare = 2  # rows past the last sequence: not written
    q, dout = rand(sum(LENS_Q) + spare, 4, 16, seed=70), rand(sum(LENS_Q) + spare, 4, 16, seed=71)
    k, v = rand(sum(LENS_K), 2, 16, seed=72), rand(sum(LENS_K), 2, 16, seed=73)
    features = dict(causal=causal, causal_alignment=alignment, window=(20, -1), softcap=3.0)
    out, lse = flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(LENS_Q), max(LENS_K), return_lse=True, **features)
    dq, dk, dv = (np.full_like(x, np.nan) for x in (q, k, v))
    flashsci.backward_varlen(q, k, v, out, dout, lse, cu_q, cu_k, max(LENS_Q), max(LENS_K), dq=dq, dk=dk, dv=dv,
                             **features)
    assert np.all(np.isnan(dq[-spare:]))
    for b in range(len(LENS_Q)):
        rows, keys = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        if LENS_K[b] == 0 or LENS_Q[b] == 0:  # rows that see nothing, keys no row sees: zero gradients
            assert np.all(dq[rows] == 0) and np.all(dk[keys] == 0) and np.all(dv[keys] == 0)
            continue
        want = reference_backward(q[None, rows], k[None, keys], v[None, keys], dout[None, rows], mask,
                                  window=(20, -1), softcap=3.0)
        check((dq[None, rows], dk[None, keys], dv[None, keys]), want, atol=2e-6, rtol=2e-6)


def test_varlen_plan_backward_and_offsets_checks():
    lens = [3, 0, 12]
    cu = offsets(lens)
    q, k, v, dout = (rand(15, 2, 8, seed=s) for s in (80, 81, 82, 83))
    with flashsci.Plan("cpu") as plan:
        plan.set_varlen_shape(3, 15, 15, 12, 12, 2, 2, 8).set_dtype("float32")
        out, lse = np.empty_like(q), np.empty((2, 15), np.float32)
        plan.forward_varlen(q, k, v, out, cu, cu, lse)
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        plan.backward_varlen(q, k, v, out, dout, lse, dq, dk, dv, cu, cu)
        for b in (0, 2):
            rows = slice(cu[b], cu[b + 1])
            want = reference_backward(q[None, rows], k[None, rows], v[None, rows], dout[None, rows])
            check((dq[None, rows], dk[None, rows], dv[None, rows]), want, atol=2e-6, rtol=2e-6)
        with pytest.raises(ValueError, match="cu_seqlens_k"):
            plan.backward_varlen(q, k, v, out, dout, lse, dq, dk, dv, cu, cu[:3])
        with pytest.raises(ValueError, match="lse"):
            plan.backward_varlen(q, k, v, out, dout, lse[:, :4], dq, dk, dv, cu, cu)
        with pytest.raises(ValueError, match="backward\\(\\)"):
            plan.set_shape(1, 15, 15, 2, 2, 8).backward_varlen(q, k, v, out, dout, lse, dq, dk, dv, cu, cu)
    bad = np.array([0, 3, 2, 15], np.int32)  # decreasing: the library names the offset
    with pytest.raises(flashsci.Error, match="cu_seqlens_q"):
        flashsci.backward_varlen(q, k, v, out, dout, lse, bad, cu, 12, 12)
