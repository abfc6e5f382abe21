"""torch autograd for flashsci: attention() and forward_varlen() on tensors that require grad.

The forward runs with the LSE and saves q, k, v, out and the LSE; the backward calls
flashsci_backward (flashsci_backward_varlen) on them with dout, on torch's current stream.
Packed inputs (qkv [..., 3, heads, head_dim], kv [..., 2, heads_kv, head_dim]) get one packed
gradient, which the library writes in place. Imported only when torch tensors are passed.
"""

import dataclasses

import torch

from . import _check, prepare, prepare_backward, prepare_backward_varlen, prepare_varlen

# How the differentiable tensors hold q, k and v: three tensors, q and kv, or one qkv;
# the packed axis is the third from the end (before heads and head_dim).
SEPARATE, KV_PACKED, QKV_PACKED = "separate", "kv_packed", "qkv_packed"
PACKED_AXIS = -3


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything of a call but the differentiable tensors: attention()'s keywords, and the offsets of a
    variable-length batch (cu_seqlens_q is None for a dense one)."""

    causal: bool = False
    causal_alignment: str = "top_left"
    scale: float = None
    window: tuple = (-1, -1)
    softcap: float = 0.0
    alibi_slopes: object = None
    deterministic: bool = False
    stream: object = None
    cu_seqlens_q: object = None
    cu_seqlens_k: object = None
    max_seqlen_q: int = None
    max_seqlen_k: int = None

    @property
    def varlen(self):
        return self.cu_seqlens_q is not None

    def features(self):
        """The keywords the forward and the backward share."""
        return dict(causal=self.causal, causal_alignment=self.causal_alignment, scale=self.scale,
                    window=self.window, softcap=self.softcap, alibi_slopes=self.alibi_slopes)

    def offsets(self):
        return self.cu_seqlens_q, self.cu_seqlens_k, self.max_seqlen_q, self.max_seqlen_k


def split(packing, tensors):
    """(q, k, v) of the differentiable tensors: views into the packed ones."""
    if packing == SEPARATE:
        return tuple(tensors)
    if packing == KV_PACKED:
        q, kv = tensors
        return q, kv.select(PACKED_AXIS, 0), kv.select(PACKED_AXIS, 1)
    (qkv,) = tensors
    return tuple(qkv.select(PACKED_AXIS, i) for i in range(3))


class AttentionFunction(torch.autograd.Function):
    """(out, lse) = attention(q, k, v); lse is not differentiable. Double backward is not supported."""

    @staticmethod
    def forward(ctx, spec, packing, *tensors):
        q, k, v = split(packing, tensors)
        if spec.varlen:
            # Rows past the last sequence are not written: zeros make their gradient (zero) well defined.
            out = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
            fwd = prepare_varlen(q, k, v, *spec.offsets(), return_lse=True, out=out, stream=spec.stream,
                                 **spec.features())
        else:
            fwd = prepare(q, k, v, return_lse=True, stream=spec.stream, **spec.features())
        _check(fwd())
        ctx.save_for_backward(*tensors, fwd.out, fwd.lse)
        ctx.spec, ctx.packing = spec, packing
        ctx.mark_non_differentiable(fwd.lse)
        return fwd.out, fwd.lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        *tensors, out, lse = ctx.saved_tensors
        with torch.no_grad():
            grads = _gradients(ctx.spec, ctx.packing, tensors, out, lse, dout)
        if torch.is_grad_enabled():  # create_graph=True: the gradients must not pass for constants
            grads = FirstOrderOnly.apply(len(tensors), *tensors, *grads)
        return (None, None) + tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad[2:]))


def _gradients(spec, packing, tensors, out, lse, dout):
    """The gradients of the differentiable tensors (packed like them) from flashsci_backward[_varlen]."""
    q, k, v = split(packing, tensors)
    # A variable-length batch leaves rows outside every sequence unwritten: their gradient is zero.
    grads, (dq, dk, dv) = _allocate(packing, q, k, torch.zeros if spec.varlen else torch.empty)
    if not dout.is_contiguous():  # e.g. the expanded ones of a sum(): zero strides
        dout = dout.contiguous()
    if spec.varlen:
        bwd = prepare_backward_varlen(q, k, v, out, dout, lse, *spec.offsets(), deterministic=spec.deterministic,
                                      dq=dq, dk=dk, dv=dv, **spec.features())
    else:
        bwd = prepare_backward(q, k, v, out, dout, lse, deterministic=spec.deterministic, dq=dq, dk=dk, dv=dv,
                               **spec.features())
    _check(bwd())
    return grads


def _allocate(packing, q, k, allocate):
    """The gradients of the differentiable tensors, and their dq, dk, dv. A packed gradient is one block per
    tensor seen packed (strided): the library refuses outputs whose address ranges interleave."""

    def packed(count, like):
        blocks = allocate((count,) + tuple(like.shape), dtype=like.dtype, device=like.device)
        return blocks.movedim(0, PACKED_AXIS), blocks.unbind(0)

    if packing == QKV_PACKED:
        dqkv, views = packed(3, q)
        return (dqkv,), views
    dq = allocate(q.shape, dtype=q.dtype, device=q.device)
    if packing == KV_PACKED:
        dkv, (dk, dv) = packed(2, k)
        return (dq, dkv), (dq, dk, dv)
    dk, dv = (allocate(k.shape, dtype=k.dtype, device=k.device) for _ in range(2))
    return (dq, dk, dv), (dq, dk, dv)


class FirstOrderOnly(torch.autograd.Function):
    """Passes gradients through, tied to the inputs they depend on: differentiating them again raises."""

    @staticmethod
    def forward(ctx, count, *inputs_and_grads):
        return inputs_and_grads[count:]

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError("flashsci: double backward (differentiating a gradient of flashsci attention, e.g. "
                           "after create_graph=True) is not supported")


def apply(spec, packing, *tensors, out=None):
    """(out, lse) of the differentiable call: out follows autograd, lse does not. out= is refused."""
    if out is not None:
        raise RuntimeError("flashsci: out= cannot be used while autograd records the call (an input requires grad); "
                           "drop out=, or run under torch.no_grad()")
    return AttentionFunction.apply(spec, packing, *tensors)
