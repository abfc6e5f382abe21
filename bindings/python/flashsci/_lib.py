"""Loads libflashsci.so and declares the C signatures of flashsci.h (ctypes).

abi/check_bindings.py compares SIGNATURES and the constants below with the header.
"""

import ctypes
import ctypes.util
import os
from pathlib import Path

# The ABI major version these declarations were written for (FLASHSCI_VERSION_MAJOR).
ABI_MAJOR = 0

# flashsci.h enumerations (values are pinned by the ABI).
STATUS_SUCCESS = 0
STATUS_INVALID_VALUE = 1
STATUS_NOT_SUPPORTED = 2
STATUS_NO_DEVICE = 3
STATUS_OUT_OF_MEMORY = 4
STATUS_DEVICE_ERROR = 5
STATUS_INTERNAL_ERROR = 6
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
TENSOR_DO, TENSOR_DQ, TENSOR_DK, TENSOR_DV = 4, 5, 6, 7
PRECISION_DEFAULT, PRECISION_TF32, PRECISION_IEEE = 0, 1, 2

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
    "flashsci_plan_set_window": (_status, [_plan, _i64, _i64]),
    "flashsci_plan_set_softcap": (_status, [_plan, ctypes.c_float]),
    "flashsci_plan_set_alibi_slopes": (_status, [_plan, ctypes.POINTER(ctypes.c_float)]),
    "flashsci_plan_set_strides": (_status, [_plan, ctypes.c_int, _i64, _i64, _i64]),
    "flashsci_plan_get_workspace_size": (_status, [_plan, ctypes.POINTER(ctypes.c_size_t)]),
    "flashsci_plan_get_kernel_name": (_status, [_plan, ctypes.POINTER(ctypes.c_char_p)]),
    "flashsci_forward": (_status, [_plan, _p, _p, _p, _p, _p, _p, ctypes.c_size_t, _p]),
    "flashsci_plan_set_varlen_shape": (_status, [_plan, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _i64]),
    "flashsci_forward_varlen": (_status, [_plan, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_size_t, _p]),
    "flashsci_plan_set_precision": (_status, [_plan, ctypes.c_int]),
    "flashsci_plan_set_deterministic": (_status, [_plan, ctypes.c_int]),
    "flashsci_plan_get_backward_workspace_size": (_status, [_plan, ctypes.POINTER(ctypes.c_size_t)]),
    "flashsci_backward": (_status, [_plan, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_size_t, _p]),
    "flashsci_backward_varlen": (
        _status,
        [_plan, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_size_t, _p],
    ),
}

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parents[2]


def candidates():
    """Where libflashsci is looked for, in order: (description, path or loader name)."""
    env = os.environ.get("FLASHSCI_LIBRARY")
    if env:
        yield "$FLASHSCI_LIBRARY", env
        return
    for name in ("libflashsci.so", f"libflashsci.so.{ABI_MAJOR}"):
        yield "package folder", str(_PACKAGE_DIR / name)
    # A source checkout: bindings/python/flashsci -> the repository's build/.
    if (_REPO_ROOT / "include" / "flashsci.h").exists():
        yield "repository build/", str(_REPO_ROOT / "build" / "libflashsci.so")
    # The system loader: LD_LIBRARY_PATH, the ld.so cache, the default folders.
    yield "system loader", f"libflashsci.so.{ABI_MAJOR}"
    found = ctypes.util.find_library("flashsci")
    if found:
        yield "ctypes.util.find_library", found


def declare(lib):
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def load():
    """The loaded library with its signatures declared; OSError when none fits."""
    tried = []
    explicit = bool(os.environ.get("FLASHSCI_LIBRARY"))
    for where, path in candidates():
        if "/" in path and not os.path.exists(path):
            tried.append(f"{path} ({where}: absent)")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({where}: {e})")
            continue
        missing = [name for name in SIGNATURES if not hasattr(lib, name)]
        if missing:
            tried.append(f"{path} ({where}: lacks {', '.join(missing)}: too old)")
            continue
        declare(lib)
        major = lib.flashsci_version() // 10000
        if major != ABI_MAJOR:
            tried.append(f"{path} ({where}: ABI major {major}, this binding needs {ABI_MAJOR})")
            continue
        lib.path = path
        lib.found_by = where
        return lib
    hint = "" if explicit else "; set FLASHSCI_LIBRARY to the path of libflashsci.so"
    raise OSError("libflashsci not found, tried: " + "; ".join(tried) + hint)
