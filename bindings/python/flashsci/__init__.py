"""libflashsci from Python: exact attention through the library's C ABI (ctypes).

    import flashsci
    out = flashsci.attention(q, k, v, causal=True)          # q, k, v: [batch, seqlen, heads, head_dim]
    out, lse = flashsci.attention(q, k, v, return_lse=True)  # lse: float32 [batch, heads_q, seqlen_q]

CUDA tensors run on the CUDA backend, enqueued on torch's current stream; CPU
tensors run on the CPU backend. Forward only (no autograd). The library is found
through $FLASHSCI_LIBRARY, then this package's folder, then build/ of the
repository, then the system loader. torch is imported only when attention() is
called.
"""

import ctypes
import math
import threading
from collections import OrderedDict

from . import _lib

__all__ = ["Error", "Forward", "Plan", "attention", "prepare", "version", "version_string", "library_path"]

_lib_handle = None
_lib_lock = threading.Lock()


def lib():
    """The loaded ctypes library (loaded on first use)."""
    global _lib_handle
    if _lib_handle is None:
        with _lib_lock:
            if _lib_handle is None:
                _lib_handle = _lib.load()
    return _lib_handle


class Error(RuntimeError):
    """A libflashsci call failed: `status` (int) and the library's `message`."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = _lib.STATUS_NAMES.get(self.status, "UNKNOWN")
        self.message = message
        super().__init__(f"{self.status_name}: {message}")


def _check(status):
    if status != _lib.STATUS_SUCCESS:
        raise Error(status, lib().flashsci_last_error().decode(errors="replace"))


def version():
    """FLASHSCI_VERSION of the loaded library: MAJOR*10000 + MINOR*100 + PATCH."""
    return lib().flashsci_version()


def version_string():
    """The loaded library's version as "MAJOR.MINOR.PATCH"."""
    return lib().flashsci_version_string().decode()


def library_path():
    """The path the library was loaded from."""
    return lib().path


class Plan:
    """An owned flashsci_plan_t with its workspace size and kernel name."""

    def __init__(self, backend):
        handle = ctypes.c_void_p()
        _check(lib().flashsci_plan_create(ctypes.byref(handle), backend))
        self.handle = handle
        self.workspace_bytes = 0
        self.kernel_name = None

    def finish(self):
        """Reads what the plan decided once all setters ran."""
        size = ctypes.c_size_t()
        _check(lib().flashsci_plan_get_workspace_size(self.handle, ctypes.byref(size)))
        self.workspace_bytes = size.value
        if hasattr(lib(), "flashsci_plan_get_kernel_name"):
            name = ctypes.c_char_p()
            _check(lib().flashsci_plan_get_kernel_name(self.handle, ctypes.byref(name)))
            self.kernel_name = name.value.decode()

    def __del__(self):
        handle, self.handle = getattr(self, "handle", None), None
        if handle and _lib_handle is not None:
            try:
                _lib_handle.flashsci_plan_destroy(handle)
            except Exception:  # interpreter shutdown
                pass


_PLAN_CACHE_SIZE = 64
_plans = OrderedDict()  # key: everything set on the plan -> Plan
_plans_lock = threading.Lock()


def _get_plan(key):
    backend, _device, shape, dtype, mask, scale, strides = key
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = Plan(backend)
    L = lib()
    _check(L.flashsci_plan_set_shape(plan.handle, *shape))
    _check(L.flashsci_plan_set_dtype(plan.handle, dtype))
    _check(L.flashsci_plan_set_mask(plan.handle, mask))
    if scale is not None:
        _check(L.flashsci_plan_set_softmax_scale(plan.handle, scale))
    for tensor, s in zip((_lib.TENSOR_Q, _lib.TENSOR_K, _lib.TENSOR_V, _lib.TENSOR_O), strides):
        _check(L.flashsci_plan_set_strides(plan.handle, tensor, *s))
    plan.finish()
    with _plans_lock:
        _plans[key] = plan
        while len(_plans) > _PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


def _dtype_code(torch, dtype):
    codes = {torch.float16: _lib.DTYPE_FLOAT16, torch.bfloat16: _lib.DTYPE_BFLOAT16, torch.float32: _lib.DTYPE_FLOAT32}
    if dtype not in codes:
        raise TypeError(f"flashsci: dtype {dtype} not supported (float16, bfloat16 or float32)")
    return codes[dtype]


def _strides(name, t):
    if t.dim() != 4:
        raise ValueError(f"flashsci: {name} must be 4-D [batch, seqlen, heads, head_dim], got shape {tuple(t.shape)}")
    if t.stride(3) != 1:
        raise ValueError(f"flashsci: {name} needs a contiguous last dimension, got strides {t.stride()}")
    return (t.stride(0), t.stride(1), t.stride(2))


def prepare(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, return_lse=False, out=None):
    """Validates the tensors, allocates what is missing and finds (or makes) the plan.

    Takes attention()'s arguments and returns a Forward without running it.
    """
    import torch

    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)):
        raise TypeError("flashsci: q, k and v must be torch tensors")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"flashsci: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"flashsci: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.device.type not in ("cuda", "cpu"):
        raise ValueError(f"flashsci: device {q.device} not supported (cuda or cpu)")
    dtype = _dtype_code(torch, q.dtype)
    q_strides, k_strides, v_strides = _strides("q", q), _strides("k", k), _strides("v", v)
    batch, seqlen_q, heads_q, head_dim = q.shape
    if k.shape != v.shape or k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"flashsci: k and v must be [batch, seqlen_k, heads_kv, head_dim] matching q "
                         f"{tuple(q.shape)}, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    seqlen_k, heads_kv = k.shape[1], k.shape[2]

    if not causal:
        mask = _lib.MASK_NONE
    elif causal_alignment == "top_left":
        mask = _lib.MASK_CAUSAL
    elif causal_alignment == "bottom_right":
        mask = _lib.MASK_CAUSAL_BOTTOM_RIGHT
    else:
        raise ValueError(f"flashsci: causal_alignment must be 'top_left' or 'bottom_right', got {causal_alignment!r}")
    if scale is not None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"flashsci: scale must be finite and positive, got {scale}")

    if out is None:
        out = torch.empty((batch, seqlen_q, heads_q, head_dim), dtype=q.dtype, device=q.device)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise ValueError(f"flashsci: out must match q ({tuple(q.shape)}, {q.dtype}, {q.device}), got "
                         f"{tuple(out.shape)}, {out.dtype}, {out.device}")
    o_strides = _strides("out", out)
    lse = None
    if return_lse:
        lse = torch.empty((batch, heads_q, seqlen_q), dtype=torch.float32, device=q.device)

    on_cuda = q.device.type == "cuda"
    backend = _lib.BACKEND_CUDA if on_cuda else _lib.BACKEND_CPU
    device_index = q.device.index if on_cuda else -1
    if on_cuda and device_index is None:
        device_index = torch.cuda.current_device()
    key = (backend, device_index, (batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim), dtype, mask, scale,
           (q_strides, k_strides, v_strides, o_strides))
    if on_cuda:
        with torch.cuda.device(device_index):  # a CUDA plan binds to the current device
            plan = _get_plan(key)
            stream = torch.cuda.current_stream().cuda_stream
    else:
        plan = _get_plan(key)
        stream = None

    workspace, workspace_ptr = None, None
    if plan.workspace_bytes:
        workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device=q.device)
        workspace_ptr = workspace.data_ptr()
    args = (plan.handle, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
            lse.data_ptr() if lse is not None else None, workspace_ptr, plan.workspace_bytes, stream)
    return Forward(plan, out, lse, workspace, args)


class Forward:
    """One prepared forward: its plan, output tensors, workspace and flashsci_forward arguments.

    Calling it enqueues (CUDA) or runs (CPU) the forward again on the same pointers and
    stream and returns the raw status; `args` may also be passed to lib().flashsci_forward.
    """

    def __init__(self, plan, out, lse, workspace, args):
        self.plan, self.out, self.lse, self.workspace, self.args = plan, out, lse, workspace, args
        self._forward = lib().flashsci_forward

    def __call__(self):
        return self._forward(*self.args)


def attention(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, return_lse=False, out=None):
    """softmax(scale · q kᵀ + mask) v for torch tensors laid out [batch, seqlen, heads, head_dim].

    q: [batch, seqlen_q, heads_q, head_dim]; k, v: [batch, seqlen_k, heads_kv, head_dim] with
    heads_q % heads_kv == 0 (GQA/MQA). Any strides with a contiguous last dimension.
    float16, bfloat16 or float32; all on one CUDA device (run on torch's current stream) or
    all on the CPU.

    causal: mask future keys; causal_alignment 'top_left' (row i sees keys j <= i, PyTorch's
    is_causal) or 'bottom_right' (j <= i + seqlen_k - seqlen_q, FlashAttention-2's convention).
    scale: defaults to 1/sqrt(head_dim). out: optional output tensor shaped like q.
    Returns out, or (out, lse) with return_lse=True, lse float32 [batch, heads_q, seqlen_q]
    (natural log; -inf for a row that sees no key). Raises flashsci.Error on a library failure.
    """
    fwd = prepare(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                  return_lse=return_lse, out=out)
    _check(fwd())
    return (fwd.out, fwd.lse) if return_lse else fwd.out
