"""libflashsci from Python: exact attention through the library's C ABI (ctypes, no compiler).

    import flashsci
    out = flashsci.attention(q, k, v, causal=True)          # q, k, v: [batch, seqlen, heads, head_dim]
    out, lse = flashsci.attention(q, k, v, return_lse=True)  # lse: float32 [batch, heads_q, seqlen_q]
    out = flashsci.forward_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
                                                             # packed sequences: q [total_q, heads, head_dim]
    dq, dk, dv = flashsci.backward(q, k, v, out, dout, lse)  # the gradients, outside autograd
    from flashsci.flash_attn_interface import flash_attn_func  # FlashAttention-2's interface, differentiable

Arrays may be torch tensors (CUDA tensors run on torch's current stream, CPU tensors on
the CPU backend), numpy arrays (CPU backend; bf16 as ml_dtypes.bfloat16 or as uint16
bit patterns with dtype="bfloat16"), or any object with __cuda_array_interface__ or
__dlpack__ (CuPy, Numba, JAX, ...). For torch tensors that require grad, attention() and
forward_varlen() are differentiable (torch autograd, flashsci_backward). Failures raise
flashsci.Error carrying the status and the library's message.

The library is found through $FLASHSCI_LIBRARY, then this package's folder, then
build/ of a source checkout, then the system loader (LD_LIBRARY_PATH, ldconfig).
No array library is imported unless an array of it is passed.
"""

import ctypes
import math
import threading
from collections import OrderedDict

from . import _arrays, _lib

__version__ = "0.2.0"
__all__ = ["Error", "Forward", "Backward", "Plan", "attention", "prepare", "forward_varlen", "prepare_varlen",
           "backward", "prepare_backward", "backward_varlen", "prepare_backward_varlen", "lib", "version",
           "version_string", "library_path"]

_lib_handle = None
_lib_lock = threading.Lock()


def lib():
    """The loaded ctypes library, its signatures declared (loaded on first use; OSError if absent)."""
    global _lib_handle
    if _lib_handle is None:
        with _lib_lock:
            if _lib_handle is None:
                _lib_handle = _lib.load()
    return _lib_handle


class Error(RuntimeError):
    """A libflashsci call failed: `status` (int), `status_name` ("INVALID_VALUE", ...) and `message`."""

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
    """The path (or loader name) the library was loaded from."""
    return lib().path


_BACKENDS = {"auto": _lib.BACKEND_AUTO, "cuda": _lib.BACKEND_CUDA, "cpu": _lib.BACKEND_CPU}
_MASKS = {"none": _lib.MASK_NONE, "causal": _lib.MASK_CAUSAL, "top_left": _lib.MASK_CAUSAL,
          "causal_bottom_right": _lib.MASK_CAUSAL_BOTTOM_RIGHT, "bottom_right": _lib.MASK_CAUSAL_BOTTOM_RIGHT}
_TENSORS = {"q": _lib.TENSOR_Q, "k": _lib.TENSOR_K, "v": _lib.TENSOR_V, "o": _lib.TENSOR_O, "out": _lib.TENSOR_O,
            "do": _lib.TENSOR_DO, "dout": _lib.TENSOR_DO, "dq": _lib.TENSOR_DQ, "dk": _lib.TENSOR_DK,
            "dv": _lib.TENSOR_DV}
_PRECISIONS = {"default": _lib.PRECISION_DEFAULT, "tf32": _lib.PRECISION_TF32, "ieee": _lib.PRECISION_IEEE}
# The tensors shaped like q (the others are shaped like k), and those the library writes.
_QUERY_LIKE = ("q", "out", "dout", "dq")
_WRITTEN = ("out", "dq", "dk", "dv")


def _code(table, what, value):
    if isinstance(value, int) and value in table.values():
        return value
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise ValueError(f"flashsci: {what} must be one of {sorted(table)}, got {value!r}")


def _device_context(device_index):
    """A context making CUDA device `device_index` current (torch or CuPy), or a no-op for -1/None."""
    import contextlib

    if device_index is None or device_index < 0:
        return contextlib.nullcontext()
    import sys

    if "torch" in sys.modules or "cupy" not in sys.modules:
        try:
            import torch

            return torch.cuda.device(device_index)
        except ImportError:
            pass
    try:
        import cupy

        return cupy.cuda.Device(device_index)
    except ImportError:
        raise RuntimeError(f"flashsci: selecting CUDA device {device_index} needs torch or CuPy") from None


class Plan:
    """A reusable flashsci_plan_t: created once, described with setters, run many times.

        plan = flashsci.Plan("cpu").set_shape(1, 128, 128, 8, 8, 64).set_dtype("float32").set_mask("causal")
        plan.forward(q, k, v, out, lse)           # arrays (checked against the plan) or raw pointers (ints)

    backend: "auto", "cuda" or "cpu". A CUDA plan binds to `device` (an index; default
    the current device). Setters return the plan; they must not run while another thread
    uses it. forward() may be called from many threads at once. close() (or `with`)
    destroys the plan; so does garbage collection.
    """

    def __init__(self, backend="auto", *, device=None):
        self._lib = lib()
        handle = ctypes.c_void_p()
        with _device_context(device):
            _check(self._lib.flashsci_plan_create(ctypes.byref(handle), _code(_BACKENDS, "backend", backend)))
        self.handle = handle
        self.device = device
        resolved = ctypes.c_int()
        _check(self._lib.flashsci_plan_get_backend(self.handle, ctypes.byref(resolved)))
        self._backend = resolved.value
        self.shape = None  # (batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim)
        # (batch, total_q, total_k, max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim) of a varlen plan
        self.varlen_shape = None
        self.dtype = None  # flashsci dtype code
        self._strides = {}

    # ---- setters -------------------------------------------------------------
    def set_shape(self, batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim):
        """Sets the shape; resets strides to contiguous [batch, seqlen, heads, head_dim]."""
        shape = tuple(int(x) for x in (batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim))
        _check(self._lib.flashsci_plan_set_shape(self.handle, *shape))
        self.shape, self.varlen_shape = shape, None
        b, sq, sk, hq, hkv, d = shape
        self._contiguous_strides((sq * hq * d, hq * d, d), (sk * hkv * d, hkv * d, d))
        return self

    def set_varlen_shape(self, batch, total_q, total_k, max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim):
        """A variable-length batch for forward_varlen(): `batch` sequences packed along one token axis, q and
        out [total_q, heads_q, head_dim], k and v [total_k, heads_kv, head_dim]. Resets strides to contiguous
        (batch stride 0); set_shape() makes the plan dense again."""
        shape = tuple(int(x) for x in (batch, total_q, total_k, max_seqlen_q, max_seqlen_k, heads_q, heads_kv,
                                       head_dim))
        _check(self._lib.flashsci_plan_set_varlen_shape(self.handle, *shape))
        self.shape, self.varlen_shape = None, shape
        _, tq, tk, _, _, hq, hkv, d = shape
        self._contiguous_strides((0, hq * d, d), (0, hkv * d, d))
        return self

    def _contiguous_strides(self, query, key):
        """What set_shape leaves in the library: every tensor contiguous, q's layout for the query-like."""
        self._strides = {_TENSORS[name]: query if name in _QUERY_LIKE else key
                         for name in ("q", "k", "v", "out", "dout", "dq", "dk", "dv")}

    def set_dtype(self, dtype):
        """"float16", "bfloat16", "float32" (or fp16/bf16/fp32, a numpy/torch dtype)."""
        code = _arrays.dtype_code(dtype)
        _check(self._lib.flashsci_plan_set_dtype(self.handle, code))
        self.dtype = code
        return self

    def set_mask(self, mask):
        """"none", "causal" (top-left, PyTorch's is_causal) or "causal_bottom_right"."""
        _check(self._lib.flashsci_plan_set_mask(self.handle, _code(_MASKS, "mask", mask)))
        return self

    def set_softmax_scale(self, scale):
        """The factor on q·kᵀ; default 1/sqrt(head_dim)."""
        _check(self._lib.flashsci_plan_set_softmax_scale(self.handle, float(scale)))
        return self

    def set_window(self, left, right):
        """Sliding window: row i sees keys c-left <= j <= c+right around the diagonal
        c = i + seqlen_k - seqlen_q (c = i under "causal"); -1 leaves a side unbounded."""
        _check(self._lib.flashsci_plan_set_window(self.handle, int(left), int(right)))
        return self

    def set_softcap(self, softcap):
        """Scores become softcap·tanh(scale·q·k / softcap); 0 turns it off."""
        _check(self._lib.flashsci_plan_set_softcap(self.handle, float(softcap)))
        return self

    def set_alibi_slopes(self, slopes):
        """ALiBi: heads_q slopes (a sequence of floats), score -= slope[h]·|i + seqlen_k - seqlen_q - j|;
        None turns it off. Needs the shape; set_shape with another heads_q turns it off."""
        if slopes is None:
            _check(self._lib.flashsci_plan_set_alibi_slopes(self.handle, None))
            return self
        values = [float(x) for x in slopes]
        heads_q = self.shape[3] if self.shape is not None else self.varlen_shape[5] if self.varlen_shape else None
        if heads_q is not None and len(values) != heads_q:
            raise ValueError(f"flashsci: alibi_slopes needs heads_q ({heads_q}) slopes, got {len(values)}")
        _check(self._lib.flashsci_plan_set_alibi_slopes(self.handle, (ctypes.c_float * len(values))(*values)))
        return self

    def set_strides(self, tensor, batch_stride, seq_stride, head_stride):
        """Strides in elements of "q", "k", "v" or "o" (the head_dim stride is 1); batch_stride 0 on a
        variable-length plan, where seq_stride steps between tokens."""
        code = _code(_TENSORS, "tensor", tensor)
        strides = (int(batch_stride), int(seq_stride), int(head_stride))
        _check(self._lib.flashsci_plan_set_strides(self.handle, code, *strides))
        self._strides[code] = strides
        return self

    def set_deterministic(self, deterministic):
        """True: backward() gives bit-identical gradients on every run (the CPU backend always does);
        False (the default): the CUDA backend may reduce with atomics (last-bit differences)."""
        _check(self._lib.flashsci_plan_set_deterministic(self.handle, int(bool(deterministic))))
        return self

    def set_precision(self, precision):
        """How a float32 plan multiplies on the GPU: "default" (fp32-level accuracy), "tf32" (one TF32 pass,
        about 1e-3 relative) or "ieee" (fp32 FMAs only). fp16/bf16 plans and the CPU backend ignore it."""
        _check(self._lib.flashsci_plan_set_precision(self.handle, _code(_PRECISIONS, "precision", precision)))
        return self

    # ---- getters -------------------------------------------------------------
    @property
    def backend(self):
        """"cuda" or "cpu" (AUTO resolved)."""
        return "cuda" if self._backend == _lib.BACKEND_CUDA else "cpu"

    @property
    def workspace_size(self):
        """Bytes of scratch memory forward() needs (0: none)."""
        size = ctypes.c_size_t()
        _check(self._lib.flashsci_plan_get_workspace_size(self.handle, ctypes.byref(size)))
        return size.value

    workspace_bytes = workspace_size

    @property
    def backward_workspace_size(self):
        """Bytes of scratch memory backward() needs (0: none)."""
        size = ctypes.c_size_t()
        _check(self._lib.flashsci_plan_get_backward_workspace_size(self.handle, ctypes.byref(size)))
        return size.value

    @property
    def kernel_name(self):
        """The kernel forward() runs, e.g. "cpu_avx2", "cuda_general", "sm90_hd128_bf16"."""
        name = ctypes.c_char_p()
        _check(self._lib.flashsci_plan_get_kernel_name(self.handle, ctypes.byref(name)))
        return name.value.decode()

    # ---- running -------------------------------------------------------------
    def forward(self, q, k, v, out, lse=None, workspace=None, stream=None, *, dtype=None):
        """flashsci_forward on arrays or raw pointers (ints).

        Arrays are checked against the plan: shape, strides, dtype and device (for
        uint16 bit patterns pass dtype=). With ints nothing can be checked: they must
        point to memory laid out as the plan says. A workspace is allocated when none is
        given and the plan needs one. CUDA: enqueued on `stream` (default: the stream of
        the arrays' library, e.g. torch's current stream). Raises flashsci.Error.
        """
        self._need_dense("forward")
        ptrs, views = self._tensor_pointers((("q", q), ("k", k), ("v", v), ("out", out)), stream, dtype)
        ptrs.append(self._lse_pointer(lse, views))
        self._launch(self._lib.flashsci_forward, ptrs, views, workspace, self.workspace_size, stream)
        return out

    def forward_varlen(self, q, k, v, out, cu_seqlens_q, cu_seqlens_k, lse=None, workspace=None, stream=None, *,
                       dtype=None):
        """flashsci_forward_varlen on a variable-length plan (set_varlen_shape), arrays or raw pointers (ints).

        q, out: [total_q, heads_q, head_dim]; k, v: [total_k, heads_kv, head_dim]; cu_seqlens_q/_k: int32
        [batch + 1] in the plan's memory (host for CPU, the device for CUDA); lse: None or float32
        [heads_q, total_q]. Arrays are checked as by forward(). Raises flashsci.Error (the CPU backend also
        checks the offsets; the CUDA backend trusts them).
        """
        self._need_varlen("forward_varlen")
        ptrs, views = self._tensor_pointers((("q", q), ("k", k), ("v", v), ("out", out)), stream, dtype)
        ptrs.append(self._lse_pointer(lse, views))
        ptrs += self._offset_pointers(cu_seqlens_q, cu_seqlens_k, views, stream)
        self._launch(self._lib.flashsci_forward_varlen, ptrs, views, workspace, self.workspace_size, stream)
        return out

    def backward(self, q, k, v, out, dout, lse, dq, dk, dv, workspace=None, stream=None, *, dtype=None):
        """flashsci_backward: dq, dk, dv (overwritten) from the forward's q, k, v, out and lse and dout = dL/dout.

        dout and dq are laid out like q (strides "dout", "dq"), dk and dv like k ("dk", "dv"); lse is
        required: float32 [batch, heads_q, seqlen_q] as forward() wrote it. Arrays or raw pointers (ints),
        checked as by forward(); the workspace is backward_workspace_size bytes. Returns (dq, dk, dv).
        """
        self._need_dense("backward")
        ptrs, views = self._backward_pointers(q, k, v, out, dout, lse, dq, dk, dv, stream, dtype)
        self._launch(self._lib.flashsci_backward, ptrs, views, workspace, self.backward_workspace_size, stream)
        return dq, dk, dv

    def backward_varlen(self, q, k, v, out, dout, lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, workspace=None,
                        stream=None, *, dtype=None):
        """flashsci_backward_varlen on a variable-length plan: backward() of forward_varlen(), lse float32
        [heads_q, total_q]. Rows of dq, dk, dv outside every sequence are not written. Returns (dq, dk, dv)."""
        self._need_varlen("backward_varlen")
        ptrs, views = self._backward_pointers(q, k, v, out, dout, lse, dq, dk, dv, stream, dtype)
        ptrs += self._offset_pointers(cu_seqlens_q, cu_seqlens_k, views, stream)
        self._launch(self._lib.flashsci_backward_varlen, ptrs, views, workspace, self.backward_workspace_size,
                     stream)
        return dq, dk, dv

    def _need_dense(self, what):
        if self.varlen_shape is not None:
            raise ValueError(f"flashsci: this plan has a variable-length shape (set_varlen_shape); call "
                             f"{what}_varlen()")

    def _need_varlen(self, what):
        if self.varlen_shape is None:
            raise ValueError(f"flashsci: {what}() needs a variable-length plan: call set_varlen_shape() "
                             f"({what.replace('_varlen', '')}() runs a dense one)")

    def _backward_pointers(self, q, k, v, out, dout, lse, dq, dk, dv, stream, dtype):
        if lse is None:
            raise ValueError("flashsci: the backward needs the forward's lse")
        ptrs, views = self._tensor_pointers((("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout)),
                                            stream, dtype)
        ptrs.append(self._lse_pointer(lse, views))
        more, more_views = self._tensor_pointers((("dq", dq), ("dk", dk), ("dv", dv)), stream, dtype)
        return ptrs + more, views + more_views

    def _tensor_pointers(self, named, stream, dtype):
        ptrs, views = [], []
        for name, x in named:
            if isinstance(x, int):
                ptrs.append(x)
                continue
            vw = _arrays.view(name, x, _arrays.stream_handle(stream))
            self._check_view(name, vw, dtype)
            views.append(vw)
            ptrs.append(vw.ptr)
        return ptrs, views

    def _offset_pointers(self, cu_seqlens_q, cu_seqlens_k, views, stream):
        ptrs = []
        batch = self.varlen_shape[0]
        for name, x in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
            if isinstance(x, int):
                ptrs.append(x)
                continue
            cv = _arrays.view(name, x, _arrays.stream_handle(stream), offsets=True)
            if cv.shape != (batch + 1,) or cv.strides != (1,):
                raise ValueError(f"flashsci: {name} must be contiguous int32 [batch + 1] = ({batch + 1},), got "
                                 f"shape {cv.shape}, strides {cv.strides}")
            self._check_device(name, cv)
            views.append(cv)
            ptrs.append(cv.ptr)
        return ptrs

    def _lse_pointer(self, lse, views):
        """lse's address: None, an int, or a contiguous float32 array of the plan's lse shape (checked)."""
        if lse is None or isinstance(lse, int):
            return lse
        lv = _arrays.view("lse", lse)
        self._need_shape()
        if self.varlen_shape is not None:
            shape = (self.varlen_shape[5], self.varlen_shape[1])  # [heads_q, total_q]
        else:
            shape = (self.shape[0], self.shape[3], self.shape[1])  # [batch, heads_q, seqlen_q]
        strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
        if lv.shape != shape or lv.strides != strides or lv.dtype != _lib.DTYPE_FLOAT32:
            raise ValueError(f"flashsci: lse must be contiguous float32 {shape}, got shape {lv.shape}, "
                             f"strides {lv.strides}, dtype {_arrays.DTYPE_LABEL.get(lv.dtype, lv.dtype)}")
        self._check_device("lse", lv)
        views.append(lv)
        return lv.ptr

    def _launch(self, function, ptrs, views, workspace, ws_bytes, stream):
        """Calls function(plan, *ptrs, workspace, ws_bytes, stream), allocating a workspace if needed."""
        keep = []
        if isinstance(workspace, int):
            ws_ptr = workspace
        elif workspace is not None:
            ws_ptr = _arrays.buffer_pointer("workspace", workspace)
        elif ws_bytes:
            if not views:
                raise ValueError(f"flashsci: this plan needs a {ws_bytes}-byte workspace; pass workspace=")
            ws = _arrays.allocate(views[0], (ws_bytes,), "uint8", None)
            keep.append(ws)
            ws_ptr = _arrays.buffer_pointer("workspace", ws)
        else:
            ws_ptr = None
        handle = _arrays.stream_handle(stream)
        if handle is None and self._backend == _lib.BACKEND_CUDA and views:
            handle = _arrays.default_cuda_stream(views, views[0].device[1])
        _check(function(self.handle, *ptrs, ws_ptr, ws_bytes, handle))

    def _need_shape(self):
        if (self.shape is None and self.varlen_shape is None) or self.dtype is None:
            raise ValueError("flashsci: set the plan's shape and dtype before forward()")
        return self.shape if self.shape is not None else self.varlen_shape

    def _check_device(self, name, vw):
        want = "cuda" if self._backend == _lib.BACKEND_CUDA else "cpu"
        if vw.device[0] != want:
            raise ValueError(f"flashsci: {name} is in {vw.device[0]} memory, this plan runs on {want}")

    def _check_view(self, name, vw, dtype):
        self._need_shape()
        query = name in _QUERY_LIKE
        if self.varlen_shape is not None:
            _, tq, tk, _, _, hq, hkv, d = self.varlen_shape
            want_shape = (tq, hq, d) if query else (tk, hkv, d)
            want_strides = self._strides[_TENSORS[name]][1:] + (1,)
        else:
            b, sq, sk, hq, hkv, d = self.shape
            want_shape = (b, sq, hq, d) if query else (b, sk, hkv, d)
            want_strides = self._strides[_TENSORS[name]] + (1,)
        if vw.shape != want_shape:
            raise ValueError(f"flashsci: {name} has shape {vw.shape}, the plan says {want_shape}")
        code = vw.dtype if vw.dtype != _arrays.RAW16 else _arrays.dtype_code(dtype)
        if code is None:
            raise TypeError(f"flashsci: {name} holds uint16 bit patterns; say dtype='bfloat16' or 'float16'")
        if code != self.dtype:
            raise TypeError(f"flashsci: {name} is {_arrays.DTYPE_LABEL[code]}, the plan says "
                            f"{_arrays.DTYPE_LABEL[self.dtype]}")
        if vw.strides != want_strides:
            raise ValueError(f"flashsci: {name} has strides {vw.strides}, the plan says {want_strides} "
                             "(set_strides describes other layouts)")
        if name in _WRITTEN and vw.readonly:
            raise ValueError(f"flashsci: {name} is read-only")
        self._check_device(name, vw)

    # ---- lifetime ------------------------------------------------------------
    def close(self):
        """Destroys the plan now (idempotent)."""
        handle, self.handle = getattr(self, "handle", None), None
        if handle and _lib_handle is not None:
            try:
                _lib_handle.flashsci_plan_destroy(handle)
            except Exception:  # interpreter shutdown
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        shape = f"shape={self.shape}" if self.varlen_shape is None else f"varlen_shape={self.varlen_shape}"
        return f"flashsci.Plan(backend={self.backend!r}, {shape}, dtype={_arrays.DTYPE_LABEL.get(self.dtype)})"


_PLAN_CACHE_SIZE = 64
_plans = OrderedDict()  # key: everything set on the plan -> Plan
_plans_lock = threading.Lock()
# The tensors of a plan key's strides, in order: the forward's four, then the backward's.
_KEY_TENSORS = ("q", "k", "v", "o", "do", "dq", "dk", "dv")


def _get_plan(key):
    backend, device, shape, dtype, mask, scale, strides, window, softcap, alibi_slopes, deterministic = key
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = Plan(backend, device=device if device >= 0 else None)
    if shape[0] == "varlen":
        plan.set_varlen_shape(*shape[1:])
    else:
        plan.set_shape(*shape)
    plan.set_dtype(dtype).set_mask(mask)
    if scale is not None:
        plan.set_softmax_scale(scale)
    plan.set_window(*window).set_softcap(softcap).set_alibi_slopes(alibi_slopes)
    for tensor, s in zip(_KEY_TENSORS, strides):
        plan.set_strides(tensor, *s)
    if deterministic:
        plan.set_deterministic(True)
    with _plans_lock:
        _plans[key] = plan
        while len(_plans) > _PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


class Forward:
    """One prepared forward: its plan, output arrays, workspace and flashsci_forward arguments.

    Calling it runs (CPU) or enqueues (CUDA) the forward again on the same pointers and
    stream and returns the raw status; `args` may also be passed to lib().flashsci_forward
    (lib().flashsci_forward_varlen for prepare_varlen()).
    """

    def __init__(self, plan, out, lse, workspace, args, keep, function="flashsci_forward"):
        self.plan, self.out, self.lse, self.workspace, self.args = plan, out, lse, workspace, args
        self._keep = keep  # the inputs, alive as long as the pointers in args are used
        self._forward = getattr(lib(), function)  # flashsci_forward, or flashsci_forward_varlen

    def __call__(self):
        return self._forward(*self.args)


class Backward:
    """One prepared backward: its plan, the gradient arrays dq, dk, dv, workspace and flashsci_backward
    arguments. Calling it runs (CPU) or enqueues (CUDA) the backward again and returns the raw status;
    `args` may also be passed to lib().flashsci_backward (flashsci_backward_varlen for
    prepare_backward_varlen())."""

    def __init__(self, plan, dq, dk, dv, workspace, args, keep, function="flashsci_backward"):
        self.plan, self.dq, self.dk, self.dv, self.workspace, self.args = plan, dq, dk, dv, workspace, args
        self._keep = keep  # the inputs, alive as long as the pointers in args are used
        self._backward = getattr(lib(), function)

    def __call__(self):
        return self._backward(*self.args)


def _mask_code(causal, causal_alignment):
    if not causal:
        return _lib.MASK_NONE
    if causal_alignment == "top_left":
        return _lib.MASK_CAUSAL
    if causal_alignment == "bottom_right":
        return _lib.MASK_CAUSAL_BOTTOM_RIGHT
    raise ValueError(f"flashsci: causal_alignment must be 'top_left' or 'bottom_right', got {causal_alignment!r}")


def _input_views(q, k, v, layout, dtype, user_stream):
    """Views of q, k, v (each of `layout`'s rank, last dimension contiguous), their flashsci dtype and device."""
    vq, vk, vv = (_arrays.view(n, x, user_stream) for n, x in (("q", q), ("k", k), ("v", v)))
    views = (vq, vk, vv)
    for vw, name in zip(views, "qkv"):
        if len(vw.shape) != len(layout):
            raise ValueError(f"flashsci: {name} must be {len(layout)}-D [{', '.join(layout)}], got shape {vw.shape}")
        if vw.strides[-1] != 1:
            raise ValueError(f"flashsci: {name} needs a contiguous last dimension, got strides {vw.strides}")
    kinds = {vw.dtype for vw in views}
    if len(kinds) != 1:
        labels = [_arrays.DTYPE_LABEL.get(vw.dtype, vw.dtype) for vw in views]
        raise TypeError(f"flashsci: q, k, v must share a dtype, got {', '.join(map(str, labels))}")
    code = kinds.pop()
    hint = _arrays.dtype_code(dtype)
    if code == _arrays.RAW16:
        if hint not in (_lib.DTYPE_FLOAT16, _lib.DTYPE_BFLOAT16):
            raise TypeError("flashsci: q, k, v hold uint16 bit patterns; say dtype='bfloat16' or dtype='float16'")
        code = hint
    elif hint is not None and hint != code:
        raise TypeError(f"flashsci: dtype={dtype!r} but the arrays are {_arrays.DTYPE_LABEL[code]}")
    devices = {vw.device for vw in views}
    if len(devices) != 1:
        raise ValueError(f"flashsci: q, k, v must be on one device, got {[vw.device for vw in views]}")
    return views, code, devices.pop()


def _dense_problem(q, k, v, dtype, user_stream):
    """Checked views of dense q, k, v, their dtype code, device and plan shape
    (batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim)."""
    views, code, device = _input_views(q, k, v, ("batch", "seqlen", "heads", "head_dim"), dtype, user_stream)
    vq, vk, vv = views
    batch, seqlen_q, heads_q, head_dim = vq.shape
    if vk.shape != vv.shape or vk.shape[0] != batch or vk.shape[3] != head_dim:
        raise ValueError(f"flashsci: k and v must be [batch, seqlen_k, heads_kv, head_dim] matching q "
                         f"{vq.shape}, got k {vk.shape}, v {vv.shape}")
    return views, code, device, (batch, seqlen_q, vk.shape[1], heads_q, vk.shape[2], head_dim)


def _varlen_problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dtype, user_stream):
    """Checked views of packed q, k, v and of the offsets, the dtype code, device and plan shape
    ("varlen", batch, total_q, total_k, max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim)."""
    views, code, device = _input_views(q, k, v, ("total", "heads", "head_dim"), dtype, user_stream)
    vq, vk, vv = views
    total_q, heads_q, head_dim = vq.shape
    if vk.shape != vv.shape or vk.shape[2] != head_dim:
        raise ValueError(f"flashsci: k and v must be [total_k, heads_kv, head_dim] matching q {vq.shape}, got "
                         f"k {vk.shape}, v {vv.shape}")
    offsets = []
    for name, x in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if isinstance(x, (list, tuple)) and device[0] == "cpu":
            import numpy as np

            x = np.asarray(x, dtype=np.int32)
        cv = _arrays.view(name, x, user_stream, offsets=True)
        if len(cv.shape) != 1 or cv.shape[0] < 2 or cv.strides != (1,):
            raise ValueError(f"flashsci: {name} must be contiguous int32 [batch + 1] with batch >= 1, got shape "
                             f"{cv.shape}, strides {cv.strides}")
        if cv.device != device:
            raise ValueError(f"flashsci: {name} is in {cv.device[0]} memory, q in {device[0]} memory; the offsets "
                             "must be where the tensors are")
        offsets.append(cv)
    if offsets[0].shape != offsets[1].shape:
        raise ValueError(f"flashsci: cu_seqlens_q {offsets[0].shape} and cu_seqlens_k {offsets[1].shape} must both "
                         "hold batch + 1 offsets")
    shape = ("varlen", offsets[0].shape[0] - 1, total_q, vk.shape[0], int(max_seqlen_q), int(max_seqlen_k),
             heads_q, vk.shape[1], head_dim)
    return views, tuple(offsets), code, device, shape


def _settings(causal, causal_alignment, scale, window, softcap, alibi_slopes, heads_q):
    """The plan settings of attention()'s keywords, checked: mask, scale, window, softcap, alibi_slopes."""
    mask = _mask_code(causal, causal_alignment)
    if scale is not None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"flashsci: scale must be finite and positive, got {scale}")
    if len(window) != 2:
        raise ValueError(f"flashsci: window must be (left, right), got {window!r}")
    window = (int(window[0]), int(window[1]))
    softcap = float(softcap)
    if alibi_slopes is not None:
        if hasattr(alibi_slopes, "tolist"):  # a torch/numpy array: one copy to the host, not one per element
            alibi_slopes = alibi_slopes.tolist()
        alibi_slopes = tuple(float(x) for x in alibi_slopes)
        if len(alibi_slopes) != heads_q:
            raise ValueError(f"flashsci: alibi_slopes needs heads_q ({heads_q}) slopes, got {len(alibi_slopes)}")
    return mask, scale, window, softcap, alibi_slopes


def _like_view(name, x, like_name, like, code, device, user_stream, written):
    """x, or a new array like `like` when x is None (only for what the library writes), and its View, checked to
    match `like`'s shape, dtype and device with a contiguous last dimension."""
    if x is None:
        if not written:
            raise ValueError(f"flashsci: {name} is required")
        x = _arrays.allocate(like, like.shape, "like", code)
    vx = _arrays.view(name, x, user_stream)
    if vx.shape != like.shape or vx.device != device or (vx.dtype != code and vx.dtype != _arrays.RAW16):
        raise ValueError(f"flashsci: {name} must match {like_name} ({like.shape}, {_arrays.DTYPE_LABEL[code]}, "
                         f"{device}), got "
                         f"{vx.shape}, {_arrays.DTYPE_LABEL.get(vx.dtype, vx.dtype)}, {vx.device}")
    if vx.strides[-1] != 1 or (written and vx.readonly):
        what = "writable with a contiguous last dimension" if written else "with a contiguous last dimension"
        raise ValueError(f"flashsci: {name} must be {what} (strides {vx.strides})")
    return x, vx


def _lse_view(lse, shape, device):
    """The View of the forward's lse handed to a backward: contiguous float32 `shape` on `device`."""
    lv = _arrays.view("lse", lse)
    strides = tuple(math.prod(shape[i + 1:]) for i in range(len(shape)))
    if lv.shape != shape or lv.strides != strides or lv.dtype != _lib.DTYPE_FLOAT32 or lv.device != device:
        raise ValueError(f"flashsci: lse must be the forward's: contiguous float32 {shape} on {device}, got shape "
                         f"{lv.shape}, strides {lv.strides}, dtype {_arrays.DTYPE_LABEL.get(lv.dtype, lv.dtype)}, "
                         f"{lv.device}")
    return lv


def _launch_args(key, views, vq, code, device, user_stream, backward):
    """The cached plan of `key`, the stream, and a workspace of the size the forward (or backward) needs:
    (plan, stream_ptr, workspace, workspace_ptr, workspace_bytes)."""
    plan = _get_plan(key)
    stream_ptr = None
    if device[0] == "cuda":
        stream_ptr = user_stream if user_stream is not None else _arrays.default_cuda_stream(views, device[1])
    elif user_stream is not None:
        raise ValueError("flashsci: stream= is for CUDA arrays; the CPU backend runs synchronously")
    workspace, workspace_ptr = None, None
    ws_bytes = plan.backward_workspace_size if backward else plan.workspace_size
    if ws_bytes:
        workspace = _arrays.allocate(vq, (ws_bytes,), "uint8", code)
        workspace_ptr = _arrays.buffer_pointer("workspace", workspace)
    return plan, stream_ptr, workspace, workspace_ptr, ws_bytes


def _key(device, shape, code, settings, views, deterministic=False):
    """The plan cache key: everything set on the plan, strides of the tensors in _KEY_TENSORS' order."""
    backend = _lib.BACKEND_CUDA if device[0] == "cuda" else _lib.BACKEND_CPU
    mask, scale, window, softcap, alibi_slopes = settings
    if shape[0] == "varlen":
        strides = tuple((0,) + vw.strides[:2] for vw in views)
    else:
        strides = tuple(vw.strides[:3] for vw in views)
    return (backend, device[1], shape, code, mask, scale, strides, window, softcap, alibi_slopes, bool(deterministic))


def prepare(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, return_lse=False, out=None,
            dtype=None, stream=None, window=(-1, -1), softcap=0.0, alibi_slopes=None):
    """Checks the arrays, allocates what is missing and finds (or makes) the plan.

    Takes attention()'s arguments and returns a Forward without running it.
    """
    user_stream = _arrays.stream_handle(stream)
    views, code, device, shape = _dense_problem(q, k, v, dtype, user_stream)
    vq = views[0]
    settings = _settings(causal, causal_alignment, scale, window, softcap, alibi_slopes, shape[3])
    out, vo = _like_view("out", out, "q", vq, code, device, user_stream, written=True)
    lse = _arrays.allocate(vq, (shape[0], shape[3], shape[1]), "float32", code) if return_lse else None
    key = _key(device, shape, code, settings, views + (vo,))
    plan, stream_ptr, ws, ws_ptr, ws_bytes = _launch_args(key, views, vq, code, device, user_stream, False)
    lse_ptr = _arrays.view("lse", lse).ptr if lse is not None else None
    args = (plan.handle, *(vw.ptr for vw in views), vo.ptr, lse_ptr, ws_ptr, ws_bytes, stream_ptr)
    return Forward(plan, out, lse, ws, args, (views, vo), "flashsci_forward")


def prepare_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False,
                   causal_alignment="top_left", scale=None, return_lse=False, out=None, dtype=None, stream=None,
                   window=(-1, -1), softcap=0.0, alibi_slopes=None):
    """Checks the arrays of a variable-length batch, allocates what is missing and finds (or makes) the plan.

    Takes forward_varlen()'s arguments and returns a Forward (of flashsci_forward_varlen) without running it.
    """
    user_stream = _arrays.stream_handle(stream)
    views, offsets, code, device, shape = _varlen_problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                          max_seqlen_k, dtype, user_stream)
    vq = views[0]
    heads_q, total_q = shape[6], shape[2]
    settings = _settings(causal, causal_alignment, scale, window, softcap, alibi_slopes, heads_q)
    out, vo = _like_view("out", out, "q", vq, code, device, user_stream, written=True)
    lse = _arrays.allocate(vq, (heads_q, total_q), "float32", code) if return_lse else None
    key = _key(device, shape, code, settings, views + (vo,))
    plan, stream_ptr, ws, ws_ptr, ws_bytes = _launch_args(key, views, vq, code, device, user_stream, False)
    lse_ptr = _arrays.view("lse", lse).ptr if lse is not None else None
    args = (plan.handle, *(vw.ptr for vw in views), vo.ptr, lse_ptr, offsets[0].ptr, offsets[1].ptr, ws_ptr,
            ws_bytes, stream_ptr)
    return Forward(plan, out, lse, ws, args, (views, offsets, vo), "flashsci_forward_varlen")


def _backward_views(views, out, dout, dq, dk, dv, code, device, user_stream):
    """The checked views of out and dout (like q) and of dq, dk, dv (like q, k, v; allocated when None)."""
    vq, vk, vv = views
    out, vo = _like_view("out", out, "q", vq, code, device, user_stream, written=False)
    dout, vdo = _like_view("dout", dout, "q", vq, code, device, user_stream, written=False)
    grads, grad_views = [], []
    for name, x, like_name, like in (("dq", dq, "q", vq), ("dk", dk, "k", vk), ("dv", dv, "v", vv)):
        x, vx = _like_view(name, x, like_name, like, code, device, user_stream, written=True)
        grads.append(x)
        grad_views.append(vx)
    return (vo, vdo), grads, tuple(grad_views)


def prepare_backward(q, k, v, out, dout, lse, *, causal=False, causal_alignment="top_left", scale=None,
                     window=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False, dq=None, dk=None, dv=None,
                     dtype=None, stream=None):
    """Checks the arrays of a backward, allocates the gradients that are missing and finds (or makes) the plan.

    Takes backward()'s arguments and returns a Backward without running it.
    """
    user_stream = _arrays.stream_handle(stream)
    views, code, device, shape = _dense_problem(q, k, v, dtype, user_stream)
    settings = _settings(causal, causal_alignment, scale, window, softcap, alibi_slopes, shape[3])
    (vo, vdo), grads, grad_views = _backward_views(views, out, dout, dq, dk, dv, code, device, user_stream)
    lv = _lse_view(lse, (shape[0], shape[3], shape[1]), device)
    key = _key(device, shape, code, settings, views + (vo, vdo) + grad_views, deterministic)
    plan, stream_ptr, ws, ws_ptr, ws_bytes = _launch_args(key, views, views[0], code, device, user_stream, True)
    args = (plan.handle, *(vw.ptr for vw in views), vo.ptr, vdo.ptr, lv.ptr, *(vw.ptr for vw in grad_views),
            ws_ptr, ws_bytes, stream_ptr)
    return Backward(plan, *grads, ws, args, (views, vo, vdo, lv), "flashsci_backward")


def prepare_backward_varlen(q, k, v, out, dout, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                            causal=False, causal_alignment="top_left", scale=None, window=(-1, -1), softcap=0.0,
                            alibi_slopes=None, deterministic=False, dq=None, dk=None, dv=None, dtype=None,
                            stream=None):
    """Checks the arrays of a variable-length backward, allocates the gradients that are missing and finds (or
    makes) the plan. Takes backward_varlen()'s arguments and returns a Backward without running it."""
    user_stream = _arrays.stream_handle(stream)
    views, offsets, code, device, shape = _varlen_problem(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                          max_seqlen_k, dtype, user_stream)
    heads_q, total_q = shape[6], shape[2]
    settings = _settings(causal, causal_alignment, scale, window, softcap, alibi_slopes, heads_q)
    (vo, vdo), grads, grad_views = _backward_views(views, out, dout, dq, dk, dv, code, device, user_stream)
    lv = _lse_view(lse, (heads_q, total_q), device)
    key = _key(device, shape, code, settings, views + (vo, vdo) + grad_views, deterministic)
    plan, stream_ptr, ws, ws_ptr, ws_bytes = _launch_args(key, views, views[0], code, device, user_stream, True)
    args = (plan.handle, *(vw.ptr for vw in views), vo.ptr, vdo.ptr, lv.ptr, *(vw.ptr for vw in grad_views),
            offsets[0].ptr, offsets[1].ptr, ws_ptr, ws_bytes, stream_ptr)
    return Backward(plan, *grads, ws, args, (views, offsets, vo, vdo, lv), "flashsci_backward_varlen")


def _differentiable(q, k, v):
    """True when q, k, v are torch tensors autograd should follow (grad mode on, one of them requires grad)."""
    if _arrays._module(q) != "torch":
        return False
    import torch

    return torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in (q, k, v))


def attention(q, k, v, *, causal=False, causal_alignment="top_left", scale=None, return_lse=False, out=None,
              dtype=None, stream=None, window=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False):
    """softmax(scale · q kᵀ + mask) v for arrays laid out [batch, seqlen, heads, head_dim].

    q: [batch, seqlen_q, heads_q, head_dim]; k, v: [batch, seqlen_k, heads_kv, head_dim] with
    heads_q % heads_kv == 0 (GQA/MQA); head_dim a multiple of 8 up to 256. Any strides with a
    contiguous last dimension. float16, bfloat16 or float32, all of one type; all on one
    CUDA device or all in host memory.

    Arrays: torch tensors, numpy arrays (host; bf16 as ml_dtypes.bfloat16 or uint16 bits with
    dtype="bfloat16"), objects with __cuda_array_interface__ or __dlpack__ (CuPy, ...).
    causal: mask future keys; causal_alignment 'top_left' (row i sees keys j <= i, PyTorch's
    is_causal) or 'bottom_right' (j <= i + seqlen_k - seqlen_q, FlashAttention-2's convention).
    scale: defaults to 1/sqrt(head_dim). out: optional output array shaped like q.
    window: (left, right) sliding window around the diagonal c = i + seqlen_k - seqlen_q
    (c = i with causal top_left): row i sees keys c - left <= j <= c + right; -1 is unbounded.
    softcap: scores become softcap·tanh(scale·q·k / softcap) (Gemma-2); 0 is off.
    alibi_slopes: heads_q floats; score -= slope[h]·|i + seqlen_k - seqlen_q - j|; None is off.
    dtype: says what uint16 arrays hold ("bfloat16" or "float16").
    stream: CUDA stream (int handle or a torch/CuPy stream); default torch's (or CuPy's)
    current stream. CUDA work is enqueued, not waited for; host arrays are computed before
    the call returns.

    Autograd: for torch tensors of which one requires grad (grad mode on), out is differentiable:
    the backward runs flashsci_backward on torch's current stream with these settings; lse is not
    differentiable, double backward raises and out= is refused. deterministic: bit-identical
    gradients on every run (the CPU backend always gives them; CUDA may otherwise use atomics).

    Returns out, or (out, lse) with return_lse=True, lse float32 [batch, heads_q, seqlen_q]
    (natural log; -inf for a row that sees no key), arrays of the inputs' library.
    Raises flashsci.Error (status + the library's message) on a library failure, TypeError or
    ValueError for arrays it cannot pass.
    """
    if _differentiable(q, k, v):
        from . import _autograd

        spec = _autograd.Spec(causal=causal, causal_alignment=causal_alignment, scale=scale, window=window,
                              softcap=softcap, alibi_slopes=alibi_slopes, deterministic=deterministic, stream=stream)
        result, lse = _autograd.apply(spec, _autograd.SEPARATE, q, k, v, out=out)
        return (result, lse) if return_lse else result
    fwd = prepare(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                  return_lse=return_lse, out=out, dtype=dtype, stream=stream, window=window, softcap=softcap,
                  alibi_slopes=alibi_slopes)
    _check(fwd())
    return (fwd.out, fwd.lse) if return_lse else fwd.out


def forward_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal=False,
                   causal_alignment="top_left", scale=None, return_lse=False, out=None, dtype=None, stream=None,
                   window=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False):
    """Attention over a variable-length batch: sequences of different lengths packed along one token axis
    (FlashAttention-2's flash_attn_varlen_func layout), each attended on its own.

    q: [total_q, heads_q, head_dim]; k, v: [total_k, heads_kv, head_dim]. cu_seqlens_q, cu_seqlens_k: int32
    [batch + 1] row offsets where the tensors are (host for numpy, the GPU for CUDA tensors; lists are taken
    for host arrays): sequence b owns q rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1 and k/v rows
    cu_seqlens_k[b] .. cu_seqlens_k[b+1]-1; cu_seqlens_q[0] == 0 and the offsets never decrease.
    max_seqlen_q, max_seqlen_k: the longest sequence's lengths (ints; an upper bound is fine).

    Every keyword is attention()'s, applied to each sequence with its own lengths: causal_alignment
    'bottom_right' aligns each sequence's own ends (row i sees j <= i + len_k - len_q), and the window and
    ALiBi diagonals move likewise. A sequence without keys gets zeros (and lse -inf); rows of out past
    cu_seqlens_q[-1] are not written (uninitialised when out is allocated here).

    The CPU backend checks the offsets (flashsci.Error naming the first bad one); the CUDA backend trusts
    them (keeping every access inside the tensors, the output is unspecified for offsets that break the rules).

    Autograd and deterministic: as attention(); out is then allocated with zeros, so that rows past
    cu_seqlens_q[-1] are zero with a zero gradient.

    Returns out, or (out, lse) with return_lse=True, lse float32 [heads_q, total_q] (natural log; -inf for a
    row that sees no key), arrays of the inputs' library. Raises as attention() does.
    """
    if _differentiable(q, k, v):
        from . import _autograd

        spec = _autograd.Spec(causal=causal, causal_alignment=causal_alignment, scale=scale, window=window,
                              softcap=softcap, alibi_slopes=alibi_slopes, deterministic=deterministic, stream=stream,
                              cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                              max_seqlen_k=max_seqlen_k)
        result, lse = _autograd.apply(spec, _autograd.SEPARATE, q, k, v, out=out)
        return (result, lse) if return_lse else result
    fwd = prepare_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal,
                         causal_alignment=causal_alignment, scale=scale, return_lse=return_lse, out=out, dtype=dtype,
                         stream=stream, window=window, softcap=softcap, alibi_slopes=alibi_slopes)
    _check(fwd())
    return (fwd.out, fwd.lse) if return_lse else fwd.out


def backward(q, k, v, out, dout, lse, *, causal=False, causal_alignment="top_left", scale=None, window=(-1, -1),
             softcap=0.0, alibi_slopes=None, deterministic=False, dq=None, dk=None, dv=None, dtype=None, stream=None):
    """The gradients of attention(): (dq, dk, dv) from its inputs, output, lse and dout = dL/dout.

    q, k, v: attention()'s inputs; out and lse: what attention(..., return_lse=True) returned for them (the
    lse is required); dout: [batch, seqlen_q, heads_q, head_dim] like out. Every keyword of the forward
    (causal, causal_alignment, scale, window, softcap, alibi_slopes) must be the same as it was there.
    dq, dk, dv: optional output arrays shaped like q, k, v (allocated when None); they are overwritten, not
    accumulated into. Any strides with a contiguous last dimension, for every array. With GQA, dk and dv
    sum the contributions of the query heads sharing a kv head.

    deterministic: bit-identical gradients on every run (the CPU backend always gives them; the CUDA
    backend may otherwise reduce with atomics). For numpy arrays (bf16 as uint16 bits with dtype=), CuPy
    and the other array kinds attention() takes; torch tensors get their gradients from autograd
    (attention() is differentiable), this is for calls outside it. CUDA work is enqueued on `stream`
    (default: torch's or CuPy's current stream) without waiting.

    Returns (dq, dk, dv), arrays of the inputs' library. Raises as attention() does.
    """
    bwd = prepare_backward(q, k, v, out, dout, lse, causal=causal, causal_alignment=causal_alignment, scale=scale,
                           window=window, softcap=softcap, alibi_slopes=alibi_slopes, deterministic=deterministic,
                           dq=dq, dk=dk, dv=dv, dtype=dtype, stream=stream)
    _check(bwd())
    return bwd.dq, bwd.dk, bwd.dv


def backward_varlen(q, k, v, out, dout, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                    causal=False, causal_alignment="top_left", scale=None, window=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, dq=None, dk=None, dv=None, dtype=None, stream=None):
    """The gradients of forward_varlen(): (dq, dk, dv) from its inputs, output, lse ([heads_q, total_q],
    required) and dout = dL/dout ([total_q, heads_q, head_dim]), with forward_varlen()'s offsets and keywords.

    As backward(), sequence by sequence; rows of dq, dk, dv outside every sequence are not written
    (uninitialised when allocated here). Returns (dq, dk, dv).
    """
    bwd = prepare_backward_varlen(q, k, v, out, dout, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  causal=causal, causal_alignment=causal_alignment, scale=scale, window=window,
                                  softcap=softcap, alibi_slopes=alibi_slopes, deterministic=deterministic, dq=dq,
                                  dk=dk, dv=dv, dtype=dtype, stream=stream)
    _check(bwd())
    return bwd.dq, bwd.dk, bwd.dv
