"""Attention in float64 with torch's own autograd: the reference the gradient tests compare with."""

import math

import torch


def attention_reference(q, k, v, *, causal=False, alignment="top_left", scale=None, window=(-1, -1), softcap=0.0,
                        alibi_slopes=None, dtype=torch.float64):
    """softmax(scale·q kᵀ + mask) v computed in `dtype` (float64 unless told), differentiable in q, k, v.

    q: [batch, seqlen_q, heads_q, head_dim]; k, v: [batch, seqlen_k, heads_kv, head_dim] (GQA through
    repeat_interleave, so autograd sums dk, dv over the query heads of a group). The masks, window,
    softcap and ALiBi follow flashsci's documentation. A row that sees no key gives zeros and lse -inf.
    Returns (out [batch, seqlen_q, heads_q, head_dim], lse [batch, heads_q, seqlen_q]).
    """
    q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = scale * q @ k.transpose(-1, -2)
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    seqlen_q, seqlen_k = s.shape[-2:]
    rows = torch.arange(seqlen_q, device=s.device)[:, None]
    cols = torch.arange(seqlen_k, device=s.device)[None, :]
    if alibi_slopes is not None:
        slopes = torch.as_tensor(alibi_slopes, dtype=dtype, device=s.device)
        s = s - slopes[:, None, None] * (rows + seqlen_k - seqlen_q - cols).abs()
    diagonal = rows + (0 if causal and alignment == "top_left" else seqlen_k - seqlen_q)
    keep = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=s.device)
    if causal:
        keep &= cols <= diagonal
    if window[0] >= 0:
        keep &= cols >= diagonal - window[0]
    if window[1] >= 0:
        keep &= cols <= diagonal + window[1]
    sees = keep.any(dim=-1, keepdim=True)
    s = s.masked_fill(~keep, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s.masked_fill(~sees, 0.0), dim=-1) * sees  # rows that see no key: P = 0
    return (p @ v).transpose(1, 2), lse


def varlen_reference(q, k, v, starts_q, starts_k, **features):
    """attention_reference() sequence by sequence on packed [total, heads, head_dim] tensors (starts: the offsets
    as a list); rows past the last sequence give zeros and lse -inf.
    Returns (out [total_q, heads_q, head_dim], lse [heads_q, total_q])."""
    outs, lses = [], []
    for b in range(len(starts_q) - 1):
        rows, keys = slice(starts_q[b], starts_q[b + 1]), slice(starts_k[b], starts_k[b + 1])
        o, lse = attention_reference(q[None, rows], k[None, keys], v[None, keys], **features)
        outs.append(o[0])
        lses.append(lse[0])
    tail, dtype = q.shape[0] - starts_q[-1], features.get("dtype", torch.float64)
    outs.append(torch.zeros(tail, *q.shape[1:], dtype=dtype, device=q.device))
    lses.append(torch.full((q.shape[1], tail), -math.inf, dtype=dtype, device=q.device))
    return torch.cat(outs), torch.cat(lses, dim=1)
