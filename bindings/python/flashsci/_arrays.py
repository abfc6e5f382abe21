"""What flashsci needs to know of an array, whatever library made it.

A View is a raw pointer, shape, strides in elements, flashsci dtype code and device,
read from (in this order) a torch tensor, a numpy array, an object with
__cuda_array_interface__ (CuPy, Numba, JAX, ...), an object with __dlpack__, or one
with __array_interface__. No array library is imported unless the array is of it.
"""

import ctypes
from dataclasses import dataclass

from . import _lib

_DTYPE_NAMES = {
    "float16": _lib.DTYPE_FLOAT16, "fp16": _lib.DTYPE_FLOAT16, "half": _lib.DTYPE_FLOAT16,
    "bfloat16": _lib.DTYPE_BFLOAT16, "bf16": _lib.DTYPE_BFLOAT16,
    "float32": _lib.DTYPE_FLOAT32, "fp32": _lib.DTYPE_FLOAT32, "float": _lib.DTYPE_FLOAT32,
}
DTYPE_LABEL = {_lib.DTYPE_FLOAT16: "float16", _lib.DTYPE_BFLOAT16: "bfloat16", _lib.DTYPE_FLOAT32: "float32"}
ITEMSIZE = {_lib.DTYPE_FLOAT16: 2, _lib.DTYPE_BFLOAT16: 2, _lib.DTYPE_FLOAT32: 4}
# Element types that carry 16-bit floats without saying which: the caller's dtype= decides.
RAW16 = "uint16"
# The element type of the row offsets of a variable-length batch (cu_seqlens); no tensor may have it.
INT32 = "int32"


def dtype_code(dtype):
    """A flashsci dtype code from a name ('bf16', 'float32', ...), a code, or a numpy/torch dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, int) and dtype in ITEMSIZE:
        return dtype
    name = str(dtype).rsplit(".", 1)[-1].lower()  # torch.bfloat16 -> bfloat16, dtype('float16') -> ...
    name = name.replace("dtype(", "").strip("')\"")
    if name in _DTYPE_NAMES:
        return _DTYPE_NAMES[name]
    raise TypeError(f"flashsci: dtype {dtype!r} not supported (float16, bfloat16 or float32)")


@dataclass
class View:
    ptr: int
    shape: tuple
    strides: tuple  # elements
    dtype: object  # flashsci dtype code, or RAW16 for uint16 bit patterns
    device: tuple  # ("cpu", -1) or ("cuda", index)
    kind: str  # torch, numpy, cai, dlpack, array_interface
    obj: object  # the array (kept alive while the view is used)
    readonly: bool = False
    stream: object = None  # the producer's stream (__cuda_array_interface__), if any


def _module(x):
    return type(x).__module__.split(".", 1)[0]


def _element_strides(name, byte_strides, itemsize):
    out = []
    for s in byte_strides:
        if s % itemsize:
            raise ValueError(f"flashsci: {name} has a stride of {s} bytes, not a multiple of its {itemsize}-byte elements")
        out.append(s // itemsize)
    return tuple(out)


def _c_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


# typestr of __array_interface__ / __cuda_array_interface__ (little-endian or native).
_TYPESTR = {"f2": _lib.DTYPE_FLOAT16, "f4": _lib.DTYPE_FLOAT32, "u2": RAW16, "V2": RAW16}


def _from_typestr(name, typestr, offsets=False):
    if offsets:
        if typestr[1:] != "i4" or typestr[0] == ">":
            raise TypeError(f"flashsci: {name} has element type {typestr!r}; int32 offsets are needed")
        return INT32
    code = _TYPESTR.get(typestr[1:])
    if code is None or typestr[0] == ">":
        raise TypeError(f"flashsci: {name} has element type {typestr!r}; float16, bfloat16 (as uint16 bits "
                        "or ml_dtypes.bfloat16) or float32 are supported")
    return code


def _torch_view(name, t, offsets=False):
    import torch

    codes = {torch.float16: _lib.DTYPE_FLOAT16, torch.bfloat16: _lib.DTYPE_BFLOAT16, torch.float32: _lib.DTYPE_FLOAT32}
    if getattr(torch, "uint16", None) is not None:
        codes[torch.uint16] = RAW16
    if offsets:
        codes = {torch.int32: INT32}
    if t.dtype not in codes:
        raise TypeError(f"flashsci: {name} has dtype {t.dtype}; " +
                        ("torch.int32 offsets are needed" if offsets else "float16, bfloat16 or float32 are supported"))
    if t.device.type == "cuda":
        device = ("cuda", t.device.index if t.device.index is not None else torch.cuda.current_device())
    elif t.device.type == "cpu":
        device = ("cpu", -1)
    else:
        raise ValueError(f"flashsci: {name} is on {t.device}; cuda or cpu tensors are supported")
    return View(t.data_ptr(), tuple(t.shape), tuple(t.stride()), codes[t.dtype], device, "torch", t)


def _numpy_view(name, a, offsets=False):
    dt = a.dtype
    if offsets:
        if dt.kind != "i" or dt.itemsize != 4 or dt.byteorder == ">":
            raise TypeError(f"flashsci: {name} has dtype {dt}; int32 offsets are needed")
        return View(a.__array_interface__["data"][0], tuple(a.shape), _element_strides(name, a.strides, 4), INT32,
                    ("cpu", -1), "numpy", a, readonly=not a.flags.writeable)
    if dt.name == "bfloat16":  # ml_dtypes.bfloat16
        code = _lib.DTYPE_BFLOAT16
    elif dt.kind in "fu" and dt.itemsize in (2, 4) and dt.byteorder != ">":
        code = {("f", 2): _lib.DTYPE_FLOAT16, ("f", 4): _lib.DTYPE_FLOAT32, ("u", 2): RAW16}.get((dt.kind, dt.itemsize))
    else:
        code = None
    if code is None:
        raise TypeError(f"flashsci: {name} has dtype {dt}; float16, float32, bfloat16 (ml_dtypes) or uint16 "
                        "bit patterns with dtype='bfloat16'/'float16' are supported")
    return View(a.__array_interface__["data"][0], tuple(a.shape), _element_strides(name, a.strides, dt.itemsize),
                code, ("cpu", -1), "numpy", a, readonly=not a.flags.writeable)


def _interface_view(name, x, iface, kind, device, offsets=False):
    shape = tuple(iface["shape"])
    code = _from_typestr(name, iface["typestr"], offsets)
    itemsize = int(iface["typestr"][2:])
    ptr, readonly = iface["data"]
    strides = iface.get("strides")
    strides = _c_strides(shape) if strides is None else _element_strides(name, strides, itemsize)
    return View(ptr or 0, shape, strides, code, device, kind, x, readonly=bool(readonly), stream=iface.get("stream"))


# DLPack (v0.x "dltensor" capsules; the ABI every producer offers).
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT = 0, 1, 2, 4


def _dlpack_view(name, x, stream, offsets=False):
    dev_type, dev_id = x.__dlpack_device__()
    on_cuda = int(dev_type) in (_DL_CUDA, _DL_CUDA_MANAGED)
    if int(dev_type) not in (_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED):
        raise ValueError(f"flashsci: {name} lives on DLPack device type {int(dev_type)}; CPU or CUDA are supported")
    # Ask the producer to make the data ready on the stream we will run on.
    capsule = x.__dlpack__(stream=(stream if stream else 1)) if on_cuda else x.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    t = _DLTensor.from_address(get(capsule, b"dltensor"))  # the DLManagedTensor starts with its DLTensor
    dt = (t.dtype.code, t.dtype.bits, t.dtype.lanes)
    codes = {(_DL_FLOAT, 16, 1): _lib.DTYPE_FLOAT16, (_DL_FLOAT, 32, 1): _lib.DTYPE_FLOAT32,
             (_DL_BFLOAT, 16, 1): _lib.DTYPE_BFLOAT16, (_DL_UINT, 16, 1): RAW16}
    code = ({(_DL_INT, 32, 1): INT32} if offsets else codes).get(dt)
    if code is None:
        raise TypeError(f"flashsci: {name} has DLPack dtype (code {dt[0]}, bits {dt[1]}, lanes {dt[2]}); " +
                        ("int32 offsets are needed" if offsets else "float16, bfloat16 or float32 are supported"))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = tuple(t.strides[i] for i in range(t.ndim)) if t.strides else _c_strides(shape)
    device = ("cuda", int(dev_id)) if on_cuda else ("cpu", -1)
    # Not consumed: the capsule (kept in obj) frees the producer's reference when collected.
    return View((t.data or 0) + t.byte_offset, shape, strides, code, device, "dlpack", (x, capsule))


def view(name, x, stream=None, offsets=False):
    """The View of an array-like, or TypeError. offsets=True: of int32 row offsets (cu_seqlens), not a tensor."""
    mod = _module(x)
    if mod == "torch" and hasattr(x, "data_ptr"):
        return _torch_view(name, x, offsets)
    if mod == "numpy" and hasattr(x, "__array_interface__") and hasattr(x, "dtype"):
        return _numpy_view(name, x, offsets)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        return _interface_view(name, x, cai, "cai", ("cuda", _cai_device(x)), offsets)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        return _dlpack_view(name, x, stream, offsets)
    ai = getattr(x, "__array_interface__", None)
    if ai is not None:
        return _interface_view(name, x, ai, "array_interface", ("cpu", -1), offsets)
    raise TypeError(f"flashsci: {name} is a {type(x).__module__}.{type(x).__name__}; expected a torch tensor, "
                    "a numpy array, or an object with __cuda_array_interface__, __dlpack__ or __array_interface__")


def buffer_pointer(name, x):
    """The address of an array-like's data, whatever its element type (for raw byte buffers: the workspace)."""
    if _module(x) == "torch" and hasattr(x, "data_ptr"):
        return x.data_ptr()
    for iface in ("__cuda_array_interface__", "__array_interface__"):
        desc = getattr(x, iface, None)
        if desc is not None:
            return desc["data"][0]
    return view(name, x).ptr


def _cai_device(x):
    """The CUDA device of a __cuda_array_interface__ object: its .device (CuPy, Numba) or the current one (-1)."""
    dev = getattr(x, "device", None)
    for attr in ("id", "index"):
        value = getattr(dev, attr, None)
        if isinstance(value, int):
            return value
    return -1


def stream_handle(stream):
    """An int CUDA stream handle from None, an int, or a stream object (torch, CuPy, Numba, __cuda_stream__)."""
    if stream is None:
        return None
    if isinstance(stream, int):
        return stream or None
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        return int(proto()[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value or None
    raise TypeError(f"flashsci: cannot read a CUDA stream handle from {stream!r} (an int, or .cuda_stream/.ptr)")


def default_cuda_stream(views, device_index):
    """The stream a CUDA forward runs on when none is given, from the first array's library."""
    v = views[0]
    if v.kind == "torch":
        import torch

        return torch.cuda.current_stream(device_index).cuda_stream or None
    if _module(v.obj) == "cupy" or (isinstance(v.obj, tuple) and _module(v.obj[0]) == "cupy"):
        import cupy

        return cupy.cuda.get_current_stream().ptr or None
    if v.stream not in (None, 0):
        return v.stream  # __cuda_array_interface__ v3: the producer's stream (1: legacy, 2: per-thread)
    return None


def allocate(like, shape, what, code):
    """A new C-contiguous array of the same library and device as `like`.

    what: "like" (the element type of `like`; flashsci dtype `code`), "float32" or "uint8".
    """
    src = like.obj[0] if isinstance(like.obj, tuple) else like.obj
    mod = _module(src)
    if mod in ("numpy", "cupy", "torch") and what == "like":
        if mod == "torch":
            import torch

            return torch.empty(shape, dtype=src.dtype, device=src.device)
        xp = __import__(mod)
        if mod == "cupy":
            with xp.cuda.Device(like.device[1] if like.device[1] >= 0 else xp.cuda.runtime.getDevice()):
                return xp.empty(shape, dtype=src.dtype)
        return xp.empty(shape, dtype=src.dtype)
    if like.device[0] == "cpu" and mod != "torch":
        import numpy as np

        if what == "like":
            return np.empty(shape, dtype={_lib.DTYPE_FLOAT16: np.float16, _lib.DTYPE_FLOAT32: np.float32}.get(code, np.uint16))
        return np.empty(shape, dtype=np.dtype(what))
    if mod == "cupy":
        import cupy

        with cupy.cuda.Device(like.device[1] if like.device[1] >= 0 else cupy.cuda.runtime.getDevice()):
            return cupy.empty(shape, dtype=what)
    try:
        import torch
    except ImportError:
        raise TypeError(f"flashsci: cannot allocate an output like a {mod} array without torch or CuPy; "
                        "pass out= (and no return_lse)") from None
    t_dtype = {"float32": torch.float32, "uint8": torch.uint8}.get(what) or {
        _lib.DTYPE_FLOAT16: torch.float16, _lib.DTYPE_BFLOAT16: torch.bfloat16, _lib.DTYPE_FLOAT32: torch.float32}[code]
    if like.device[0] == "cpu":
        dev = "cpu"
    else:
        dev = f"cuda:{like.device[1] if like.device[1] >= 0 else torch.cuda.current_device()}"
    return torch.empty(shape, dtype=t_dtype, device=dev)
