"""FlashAttention-2's Python interface on libflashsci, differentiable, for torch tensors.

    from flashsci.flash_attn_interface import flash_attn_func   # instead of: from flash_attn import ...
    out = flash_attn_func(q, k, v, causal=True)                   # q: [batch, seqlen, nheads, headdim]

The functions take flash_attn's names, argument order, defaults and conventions: causal is
aligned to the bottom-right corner (query i sees keys j <= i + seqlen_k - seqlen_q), the window
(left, right) is taken around that diagonal, alibi_slopes is (nheads,) or (batch_size, nheads)
float32, and return_attn_probs=True returns (out, softmax_lse, None) with softmax_lse float32
[batch_size, nheads, seqlen_q] ([nheads, total_q] for the varlen functions). The gradients of
packed inputs are packed like them. CUDA tensors run on torch's current stream, CPU tensors on
the CPU backend; float16, bfloat16 and float32 are taken (flash_attn takes the first two), any
head dim up to 256 (padded to a multiple of 8 with zeros, which changes no score).

What differs: dropout_p other than 0 raises NotImplementedError (the library computes exact
attention without dropout); there is no attention-probability matrix (the third result is None);
paged KV (block_table) is not supported. ALiBi slopes are copied to the host on every call; the varlen
functions with (batch_size, nheads) slopes whose rows differ also read the offsets on the host and run
one call per sequence.
"""

import torch

from . import _autograd

__all__ = ["flash_attn_func", "flash_attn_kvpacked_func", "flash_attn_qkvpacked_func", "flash_attn_varlen_func",
           "flash_attn_varlen_kvpacked_func", "flash_attn_varlen_qkvpacked_func"]

# The library's head dims are multiples of this; other head dims are padded with zeros up to one.
HEAD_DIM_MULTIPLE = 8


def _no_dropout(dropout_p):
    if dropout_p != 0:
        raise NotImplementedError(f"flashsci: dropout_p={dropout_p} is not supported: libflashsci computes exact "
                                  "attention without dropout. Pass dropout_p=0.0 (as at evaluation), or apply "
                                  "dropout outside the attention.")


def _padded(tensors):
    """The tensors with a contiguous last dimension padded with zeros to a multiple of HEAD_DIM_MULTIPLE, and the
    head dim they had (differentiable: autograd slices the padding off the gradients)."""
    head_dim = tensors[0].shape[-1]
    pad = -head_dim % HEAD_DIM_MULTIPLE
    out = []
    for t in tensors:
        if t.stride(-1) != 1:
            t = t.contiguous()
        out.append(torch.nn.functional.pad(t, (0, pad)) if pad else t)
    return out, head_dim


def _slope_rows(alibi_slopes, batch):
    """None, one tuple of per-head slopes for the whole batch, or a list of `batch` tuples when they differ."""
    if alibi_slopes is None:
        return None
    slopes = alibi_slopes.detach().float().cpu() if torch.is_tensor(alibi_slopes) else torch.tensor(alibi_slopes)
    if slopes.dim() == 1:
        return tuple(slopes.tolist())
    if slopes.dim() != 2 or slopes.shape[0] != batch:
        raise ValueError(f"flashsci: alibi_slopes must be (nheads,) or (batch_size={batch}, nheads), got shape "
                         f"{tuple(slopes.shape)}")
    if bool((slopes == slopes[0]).all()):
        return tuple(slopes[0].tolist())
    return [tuple(row) for row in slopes.tolist()]


def _features(head_dim, softmax_scale, causal, window_size, softcap, deterministic):
    """Spec keywords of flash_attn's arguments: bottom-right causal, any negative window side unbounded (-1),
    softcap <= 0 off, the default scale 1/sqrt(headdim) of the unpadded head dim."""
    left, right = (int(x) if x >= 0 else -1 for x in window_size)
    return dict(causal=bool(causal), causal_alignment="bottom_right", window=(left, right),
                softcap=max(float(softcap), 0.0), scale=softmax_scale if softmax_scale is not None else head_dim ** -0.5,
                deterministic=bool(deterministic))


def _finish(out, lse, head_dim, return_attn_probs):
    out = out[..., :head_dim]
    return (out, lse, None) if return_attn_probs else out


def _dense(packing, tensors, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
           return_attn_probs):
    _no_dropout(dropout_p)
    tensors, head_dim = _padded(tensors)
    features = _features(head_dim, softmax_scale, causal, window_size, softcap, deterministic)
    slopes = _slope_rows(alibi_slopes, tensors[0].shape[0])
    if isinstance(slopes, list):  # slopes per batch element: one call each (the plan holds one row)
        parts = [_autograd.apply(_autograd.Spec(alibi_slopes=row, **features), packing,
                                 *(t[b:b + 1] for t in tensors)) for b, row in enumerate(slopes)]
        out, lse = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    else:
        out, lse = _autograd.apply(_autograd.Spec(alibi_slopes=slopes, **features), packing, *tensors)
    return _finish(out, lse, head_dim, return_attn_probs)


def _varlen(packing, tensors, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale,
            causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs, block_table=None):
    _no_dropout(dropout_p)
    if block_table is not None:
        raise NotImplementedError("flashsci: block_table (a paged KV cache) is not supported; pass k and v as "
                                  "[total_k, nheads_k, headdim] tensors")
    tensors, head_dim = _padded(tensors)
    features = _features(head_dim, softmax_scale, causal, window_size, softcap, deterministic)
    slopes = _slope_rows(alibi_slopes, cu_seqlens_q.shape[0] - 1)
    if isinstance(slopes, list):
        out, lse = _per_sequence(packing, tensors, cu_seqlens_q, cu_seqlens_k, slopes, features)
    else:
        spec = _autograd.Spec(alibi_slopes=slopes, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                              max_seqlen_q=int(max_seqlen_q), max_seqlen_k=int(max_seqlen_k), **features)
        out, lse = _autograd.apply(spec, packing, *tensors)
    return _finish(out, lse, head_dim, return_attn_probs)


def _per_sequence(packing, tensors, cu_seqlens_q, cu_seqlens_k, slope_rows, features):
    """(out, lse) of a variable-length batch whose sequences have slopes of their own (the plan holds one row): one
    call per sequence, the offsets read on the host. Rows past the last sequence give zeros and lse -inf."""
    starts_q, starts_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    # Which tensors are cut by the query offsets (the others by the key offsets).
    query_like = {_autograd.SEPARATE: (True, False, False), _autograd.KV_PACKED: (True, False),
                  _autograd.QKV_PACKED: (True,)}[packing]
    first = tensors[0]
    heads, head_dim = first.shape[-2], first.shape[-1]
    outs, lses = [], []

    def no_keys(rows):  # what the library gives rows that see no key
        outs.append(first.new_zeros((rows, heads, head_dim)))
        lses.append(torch.full((heads, rows), float("-inf"), device=first.device))

    for b, row in enumerate(slope_rows):
        rows, keys = slice(starts_q[b], starts_q[b + 1]), slice(starts_k[b], starts_k[b + 1])
        length_q, length_k = rows.stop - rows.start, keys.stop - keys.start
        if length_q == 0:
            continue
        if length_k == 0:
            no_keys(length_q)
            continue
        parts = [t[rows] if by_query else t[keys] for t, by_query in zip(tensors, query_like)]
        cu_q, cu_k = (torch.tensor([0, n], dtype=torch.int32, device=first.device) for n in (length_q, length_k))
        spec = _autograd.Spec(alibi_slopes=row, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=length_q,
                              max_seqlen_k=length_k, **features)
        out, lse = _autograd.apply(spec, packing, *parts)
        outs.append(out)
        lses.append(lse)
    no_keys(first.shape[0] - starts_q[-1])
    return torch.cat(outs), torch.cat(lses, dim=1)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_func on q, k, v stacked into one tensor.

    qkv: (batch_size, seqlen, 3, nheads, headdim). Returns out (batch_size, seqlen, nheads, headdim), or
    (out, softmax_lse (batch_size, nheads, seqlen), None) with return_attn_probs. The gradient of qkv is
    one tensor shaped like it. The other arguments are flash_attn_func's.
    """
    return _dense(_autograd.QKV_PACKED, (qkv,), dropout_p, softmax_scale, causal, window_size, softcap,
                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_func with k and v stacked into one tensor.

    q: (batch_size, seqlen_q, nheads, headdim); kv: (batch_size, seqlen_k, 2, nheads_k, headdim) with
    nheads % nheads_k == 0 (MQA/GQA). The gradient of kv is one tensor shaped like it. The other arguments
    and the results are flash_attn_func's.
    """
    return _dense(_autograd.KV_PACKED, (q, kv), dropout_p, softmax_scale, causal, window_size, softcap,
                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """softmax(softmax_scale · q kᵀ + mask) v, differentiable, with FlashAttention-2's conventions.

    q: (batch_size, seqlen_q, nheads, headdim); k, v: (batch_size, seqlen_k, nheads_k, headdim) with
    nheads % nheads_k == 0 (MQA/GQA: query heads h·g .. h·g+g-1 read kv head h).
    dropout_p: must be 0.0 (NotImplementedError otherwise).
    softmax_scale: defaults to 1 / sqrt(headdim).
    causal: query i sees keys j <= i + seqlen_k - seqlen_q (aligned to the bottom-right corner); a row that
        sees no key gives zeros.
    window_size: (left, right); query i sees keys i + seqlen_k - seqlen_q - left ..
        i + seqlen_k - seqlen_q + right; -1 is unbounded.
    softcap: > 0 turns scores s into softcap · tanh(s / softcap).
    alibi_slopes: (nheads,) or (batch_size, nheads) float32; adds -slope · |i + seqlen_k - seqlen_q - j|.
    deterministic: bit-identical gradients on every run (the CPU backend always gives them).
    return_attn_probs: return (out, softmax_lse, None), softmax_lse float32 (batch_size, nheads, seqlen_q),
        the natural-log LSE of each row of the scaled scores (not differentiable).
    Returns out: (batch_size, seqlen_q, nheads, headdim).
    """
    return _dense(_autograd.SEPARATE, (q, k, v), dropout_p, softmax_scale, causal, window_size, softcap,
                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """flash_attn_varlen_func on q, k, v stacked into one tensor: qkv (total, 3, nheads, headdim), the same
    offsets cu_seqlens (batch_size + 1,) int32 and max_seqlen for queries and keys. The gradient of qkv is one
    tensor shaped like it."""
    return _varlen(_autograd.QKV_PACKED, (qkv,), cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p,
                   softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_varlen_func with k and v stacked into one tensor: kv (total_k, 2, nheads_k, headdim). The
    gradient of kv is one tensor shaped like it."""
    return _varlen(_autograd.KV_PACKED, (q, kv), cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                   softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """flash_attn_func on sequences of different lengths packed along one token axis, each attended on its own.

    q: (total_q, nheads, headdim); k, v: (total_k, nheads_k, headdim); cu_seqlens_q, cu_seqlens_k:
    (batch_size + 1,) int32 cumulative lengths on the tensors' device (sequence b owns rows
    cu_seqlens[b] .. cu_seqlens[b+1]-1; an empty sequence is fine); max_seqlen_q, max_seqlen_k: ints, the
    longest lengths. causal, window_size and alibi_slopes align each sequence's own ends. Rows past
    cu_seqlens_q[-1] give zeros. block_table must be None.
    Returns out (total_q, nheads, headdim), or (out, softmax_lse (nheads, total_q), None) with
    return_attn_probs. The other arguments are flash_attn_func's.
    """
    return _varlen(_autograd.SEPARATE, (q, k, v), cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                   softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs,
                   block_table)
