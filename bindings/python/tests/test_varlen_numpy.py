"""forward_varlen on the CPU backend with numpy arrays (what CI runs), against a per-sequence fp64 reference."""

import numpy as np
import pytest

import flashsci

from test_numpy import bf16_bits, from_bf16, rand, reference

try:
    flashsci.lib()
except OSError as e:  # not built: say so loudly rather than pass
    pytest.fail(f"libflashsci not found: {e}", pytrace=False)

MASKS = {"none": (False, "top_left"), "causal": (True, "top_left"), "causal_bottom_right": (True, "bottom_right")}
# Lengths 1, 17, 40 and 129 queries; a sequence without queries, one without keys; fewer keys than queries (bottom-
# right causal then leaves rows that see nothing) and more.
LENS_Q = [1, 17, 0, 40, 129, 9]
LENS_K = [17, 1, 5, 0, 129, 30]


def offsets(lens):
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)


def varlen_reference(q, k, v, cu_q, cu_k, mask="none", **features):
    """The dense reference sequence by sequence: out [total_q, heads_q, d] (NaN outside every sequence), lse
    [heads_q, total_q]."""
    out = np.full(q.shape, np.nan)
    lse = np.full((q.shape[1], q.shape[0]), np.nan)
    for b in range(len(cu_q) - 1):
        rows, keys = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        if cu_q[b + 1] == cu_q[b]:
            continue
        if cu_k[b + 1] == cu_k[b]:  # no keys: the rows see nothing
            out[rows], lse[:, rows] = 0.0, -np.inf
            continue
        o, l = reference(q[None, rows], k[None, keys], v[None, keys], mask, **features)
        out[rows], lse[:, rows] = o[0], l[0]
    return out, lse


def packed(lens_q, lens_k, heads_q, heads_kv, head_dim, seed, spare=0):
    q = rand(sum(lens_q) + spare, heads_q, head_dim, seed=seed)
    k = rand(sum(lens_k), heads_kv, head_dim, seed=seed + 1)
    v = rand(sum(lens_k), heads_kv, head_dim, seed=seed + 2)
    return q, k, v


@pytest.mark.parametrize("mask", list(MASKS))
def test_varlen_matches_fp64_per_sequence(mask):
    q, k, v = packed(LENS_Q, LENS_K, 4, 2, 16, seed=30, spare=2)  # GQA 4:2; two tokens past the last sequence
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    causal, alignment = MASKS[mask]
    out = np.full_like(q, np.nan)
    got, lse = flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(LENS_Q), max(LENS_K), causal=causal,
                                       causal_alignment=alignment, return_lse=True, out=out)
    assert got is out and lse.dtype == np.float32 and lse.shape == (4, q.shape[0])
    ref, ref_lse = varlen_reference(q, k, v, cu_q, cu_k, mask)
    owned = ~np.isnan(ref[:, 0, 0])
    assert np.all(np.isnan(out[~owned])), "a row outside every sequence was written"
    np.testing.assert_allclose(out[owned], ref[owned], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(lse[:, owned], ref_lse[:, owned], atol=1e-5, rtol=1e-5)
    blind = np.isinf(ref_lse[0])
    assert blind.sum() >= 40 and np.all(out[blind] == 0) and np.all(lse[:, blind] == -np.inf)


@pytest.mark.parametrize("mask", list(MASKS))
def test_varlen_window_softcap_alibi_per_sequence(mask):
    q, k, v = packed(LENS_Q, LENS_K, 4, 2, 16, seed=40)
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    causal, alignment = MASKS[mask]
    slopes = [0.5, 0.25, 0.125, 0.0625]
    for window, softcap, alibi in [((5, 3), 0.0, None), ((-1, 2), 2.0, None), ((-1, -1), 0.0, slopes),
                                   ((0, 0), 1.5, slopes)]:
        out, lse = flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(LENS_Q), max(LENS_K), causal=causal,
                                           causal_alignment=alignment, return_lse=True, window=window,
                                           softcap=softcap, alibi_slopes=alibi)
        ref, ref_lse = varlen_reference(q, k, v, cu_q, cu_k, mask, window=window, softcap=softcap,
                                        alibi_slopes=alibi)
        np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(lse, ref_lse, atol=1e-5, rtol=1e-5)


def test_varlen_packed_qkv_views_and_list_offsets():
    lens = [7, 1, 33, 0, 12]
    qkv = rand(sum(lens), 3, 2, 32, seed=50)  # [total, 3, heads, head_dim]: strided views of one tensor
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    cu = [int(x) for x in offsets(lens)]
    out = flashsci.forward_varlen(q, k, v, cu, cu, 40, 40, causal=True)  # a max above the longest is fine
    ref, _ = varlen_reference(q, k, v, np.array(cu), np.array(cu), "causal")
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_varlen_float16_and_bfloat16_bits():
    q, k, v = packed(LENS_Q, LENS_K, 2, 2, 32, seed=60)
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    q16, k16, v16 = (x.astype(np.float16) for x in (q, k, v))
    out = flashsci.forward_varlen(q16, k16, v16, cu_q, cu_k, max(LENS_Q), max(LENS_K), causal=True)
    assert out.dtype == np.float16
    ref, _ = varlen_reference(q16, k16, v16, cu_q, cu_k, "causal")
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=1e-2)
    qb, kb, vb = bf16_bits(q), bf16_bits(k), bf16_bits(v)
    out = flashsci.forward_varlen(qb, kb, vb, cu_q, cu_k, max(LENS_Q), max(LENS_K), dtype="bfloat16")
    ref, _ = varlen_reference(from_bf16(qb), from_bf16(kb), from_bf16(vb), cu_q, cu_k)
    np.testing.assert_allclose(from_bf16(out), ref, atol=1e-2, rtol=1e-2)


def test_varlen_bad_offsets_are_library_errors_naming_the_first_bad_index():
    q, k, v = packed(LENS_Q, LENS_K, 2, 1, 8, seed=70)
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    out = np.full_like(q, np.nan)
    bad = cu_q.copy()
    bad[3], bad[4] = bad[4], bad[3]  # decreasing at index 4
    with pytest.raises(flashsci.Error) as info:
        flashsci.forward_varlen(q, k, v, bad, cu_k, max(LENS_Q), max(LENS_K), out=out)
    assert info.value.status == flashsci._lib.STATUS_INVALID_VALUE
    assert "cu_seqlens_q[4]" in info.value.message and "nondecreasing" in info.value.message
    with pytest.raises(flashsci.Error, match=r"cu_seqlens_k\[5\] - cu_seqlens_k\[4\] \(129\) exceeds max_seqlen_k"):
        flashsci.forward_varlen(q, k, v, cu_q, cu_k, max(LENS_Q), 100, out=out)
    with pytest.raises(flashsci.Error, match=r"max_seqlen_q \(500\) must not exceed total_q"):
        flashsci.forward_varlen(q, k, v, cu_q, cu_k, 500, max(LENS_K), out=out)
    assert np.all(np.isnan(out)), "a failing call wrote out"


def test_varlen_argument_errors_before_the_library():
    q, k, v = packed(LENS_Q, LENS_K, 2, 1, 8, seed=80)
    cu_q, cu_k = offsets(LENS_Q), offsets(LENS_K)
    with pytest.raises(TypeError, match="int32"):
        flashsci.forward_varlen(q, k, v, cu_q.astype(np.int64), cu_k, 129, 129)
    with pytest.raises(ValueError, match="batch \\+ 1"):
        flashsci.forward_varlen(q, k, v, cu_q, cu_k[:-1], 129, 129)
    with pytest.raises(ValueError, match="batch \\+ 1"):
        flashsci.forward_varlen(q, k, v, cu_q[:1], cu_k[:1], 129, 129)
    with pytest.raises(ValueError, match="3-D"):
        flashsci.forward_varlen(q[None], k[None], v[None], cu_q, cu_k, 129, 129)
    with pytest.raises(ValueError, match="contiguous"):
        flashsci.forward_varlen(q, k, v, np.repeat(cu_q, 2)[::2], cu_k, 129, 129)


def test_varlen_plan_checks_arrays_and_refuses_the_dense_forward():
    lens_q, lens_k = [3, 0, 6], [4, 2, 6]
    q, k, v = packed(lens_q, lens_k, 4, 2, 16, seed=90)
    cu_q, cu_k = offsets(lens_q), offsets(lens_k)
    with flashsci.Plan("cpu") as plan:
        plan.set_varlen_shape(3, 9, 12, 6, 6, 4, 2, 16).set_dtype("float32").set_mask("causal_bottom_right")
        assert plan.varlen_shape == (3, 9, 12, 6, 6, 4, 2, 16) and plan.shape is None
        assert plan.kernel_name.startswith("cpu_")  # cpu_avx512, cpu_avx2, cpu_portable or cpu_reference
        out, lse = np.full_like(q, np.nan), np.full((4, 9), np.nan, np.float32)
        plan.forward_varlen(q, k, v, out, cu_q, cu_k, lse)
        ref, ref_lse = varlen_reference(q, k, v, cu_q, cu_k, "causal_bottom_right")
        np.testing.assert_allclose(out, ref, atol=1e-5)
        np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
        with pytest.raises(ValueError, match="forward_varlen"):
            plan.forward(q, k, v, out)
        with pytest.raises(ValueError, match="lse"):
            plan.forward_varlen(q, k, v, out, cu_q, cu_k, np.empty((9, 4), np.float32))
        with pytest.raises(ValueError, match="cu_seqlens_k"):
            plan.forward_varlen(q, k, v, out, cu_q, cu_k[:3], lse)
        with pytest.raises(ValueError, match="shape"):
            plan.forward_varlen(q[:8], k, v, out, cu_q, cu_k)
        with pytest.raises(flashsci.Error, match="batch_stride of q \\(1\\) must be 0"):
            plan.set_strides("q", 1, 64, 16)
        # Raw pointers pass through unchecked; the offsets too.
        out2 = np.full_like(q, np.nan)
        plan.forward_varlen(q.ctypes.data, k.ctypes.data, v.ctypes.data, out2.ctypes.data, cu_q.ctypes.data,
                            cu_k.ctypes.data)
        np.testing.assert_array_equal(out, out2)
        plan.set_shape(1, 9, 12, 4, 2, 16)  # dense again
        with pytest.raises(ValueError, match="set_varlen_shape"):
            plan.forward_varlen(q, k, v, out, cu_q, cu_k)
        plan.forward(q[None].copy(), k[None].copy(), v[None].copy(), out[None].copy())  # (fresh 4-D strides)
