"""Loads libflashsci.so and declares the C signatures of flashsci.h (ctypes)."""

import ctypes
import ctypes.util
import os
from pathlib import Path

# flashsci.h enumerations (values are pinned by the ABI).
STATUS_SUCCESS = 0
STATUS_NAMES = {
    0: "SUCCESS",
    1: "INVALID_VALUE",
    2: "NOT_SUPPORTED",
    3: "NO_DEVICE",
    4: "OUT_OF_MEMORY",
    5: "DEVICE_ERROR",
    6: "INTERNAL_ERROR",
}
DTYPE_FLOAT16, DTYPE_BFLOAT16, DTYPE_FLOAT32 = 1, 2, 3
BACKEND_AUTO, BACKEND_CUDA, BACKEND_CPU = 0, 1, 2
MASK_NONE, MASK_CAUSAL, MASK_CAUSAL_BOTTOM_RIGHT = 0, 1, 2
TENSOR_Q, TENSOR_K, TENSOR_V, TENSOR_O = 0, 1, 2, 3

_status = ctypes.c_int
_plan = ctypes.c_void_p
_i64 = ctypes.c_int64
_p = ctypes.c_void_p

# name: (restype, argtypes) for every function of flashsci.h.
SIGNATURES = {
    "flashsci_version": (ctypes.c_int, []),
    "flashsci_version_string": (ctypes.c_char_p, []),
    "flashsci_status_string": (ctypes.c_char_p, [_status]),
    "flashsci_last_error": (ctypes.c_char_p, []),
    "flashsci_plan_create": (_status, [ctypes.POINTER(_plan), ctypes.c_int]),
    "flashsci_plan_destroy": (_status, [_plan]),
    "flashsci_plan_get_backend": (_status, [_plan, ctypes.POINTER(ctypes.c_int)]),
    "flashsci_plan_set_shape": (_status, [_plan, _i64, _i64, _i64, _i64, _i64, _i64]),
    "flashsci_plan_set_dtype": (_status, [_plan, ctypes.c_int]),
    "flashsci_plan_set_mask": (_status, [_plan, ctypes.c_int]),
    "flashsci_plan_set_softmax_scale": (_status, [_plan, ctypes.c_float]),
    "flashsci_plan_set_strides": (_status, [_plan, ctypes.c_int, _i64, _i64, _i64]),
    "flashsci_plan_get_workspace_size": (_status, [_plan, ctypes.POINTER(ctypes.c_size_t)]),
    "flashsci_plan_get_kernel_name": (_status, [_plan, ctypes.POINTER(ctypes.c_char_p)]),
    "flashsci_forward": (_status, [_plan, _p, _p, _p, _p, _p, _p, ctypes.c_size_t, _p]),
}
# Functions that older libraries may lack; the rest must exist.
OPTIONAL = {"flashsci_plan_get_kernel_name"}

_REPO_ROOT = Path(__file__).resolve().parents[3]


def candidates():
    """Where libflashsci.so is looked for, in order."""
    env = os.environ.get("FLASHSCI_LIBRARY")
    if env:
        yield env
        return
    here = Path(__file__).resolve().parent
    for name in ("libflashsci.so", "libflashsci.so.0"):
        yield str(here / name)
    yield str(_REPO_ROOT / "build" / "libflashsci.so")
    found = ctypes.util.find_library("flashsci")
    yield found or "libflashsci.so.0"


def load():
    """The loaded library with its signatures declared; OSError when none is found."""
    tried = []
    explicit = bool(os.environ.get("FLASHSCI_LIBRARY"))
    for path in candidates():
        if "/" in path and not os.path.exists(path):
            tried.append(f"{path} (absent)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        for name, (restype, argtypes) in SIGNATURES.items():
            if name in OPTIONAL and not hasattr(lib, name):
                continue
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        lib.path = path
        return lib
    hint = "" if explicit else "; set FLASHSCI_LIBRARY to the path of libflashsci.so"
    raise OSError("libflashsci not found, tried: " + "; ".join(tried) + hint)
