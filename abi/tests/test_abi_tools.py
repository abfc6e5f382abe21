"""The ABI guard and the bindings check must fail on the changes they exist to catch.

Each test changes a copy of the header, the Rust declarations or the library (a stub
library built here with cc, exporting the header's functions under a chosen soname).
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ABI = os.path.dirname(HERE)
ROOT = os.path.dirname(ABI)
sys.path.insert(0, ABI)
import cheader  # noqa: E402
import check_abi  # noqa: E402
import check_bindings  # noqa: E402

HEADER = os.path.join(ROOT, "include", "flashsci.h")
RUST = os.path.join(ROOT, "bindings", "rust", "flashsci-sys", "src", "lib.rs")
PYTHON = os.path.join(ROOT, "bindings", "python", "flashsci", "_lib.py")
BASELINE = os.path.join(ABI, "flashsci.abi")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def changed(tmp_path, path, old, new, count=1):
    text = read(path)
    assert text.count(old) >= 1, f"{old!r} not in {path}"
    out = tmp_path / os.path.basename(path)
    out.write_text(text.replace(old, new, count), encoding="utf-8")
    return str(out)


# ---- check_bindings -----------------------------------------------------------------

def bindings(header=HEADER, rust=RUST, python=PYTHON):
    return check_bindings.main(["--header", header, "--rust", rust, "--python", python])


def test_bindings_match_the_header():
    assert bindings() == 0


@pytest.mark.parametrize("old,new", [
    ("FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: flashsci_mask_t = 2;", "FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: flashsci_mask_t = 3;"),
    ("pub const FLASHSCI_TENSOR_O: flashsci_tensor_t = 3;", ""),
    ("        seq_stride: i64,", "        seq_stride: i32,"),
    ("lse: *mut c_float,", "lse: *const c_float,"),
    ("name: *mut *const c_char", "name: *mut *mut c_char"),
    ("pub fn flashsci_last_error() -> *const c_char;", ""),
    ("pub fn flashsci_last_error() -> *const c_char;", "pub fn flashsci_last_error() -> *const c_char;\n    pub fn flashsci_extra();"),
    ("pub type flashsci_plan_t = *mut flashsci_plan_st;", "pub type flashsci_plan_t = *mut c_void;"),
    ("pub const FLASHSCI_VERSION_MINOR: c_int = 2;", "pub const FLASHSCI_VERSION_MINOR: c_int = 9;"),
    ("batch_stride: i64,\n        seq_stride", "seq_stride: i64,\n        batch_stride"),
])
def test_a_changed_rust_declaration_fails(tmp_path, old, new, capsys):
    assert bindings(rust=changed(tmp_path, RUST, old, new)) == 1
    assert "rust:" in capsys.readouterr().out


@pytest.mark.parametrize("old,new", [
    ("DTYPE_FLOAT16, DTYPE_BFLOAT16, DTYPE_FLOAT32 = 1, 2, 3", "DTYPE_FLOAT16, DTYPE_BFLOAT16, DTYPE_FLOAT32 = 1, 3, 2"),
    ('"flashsci_plan_set_softmax_scale": (_status, [_plan, ctypes.c_float]),',
     '"flashsci_plan_set_softmax_scale": (_status, [_plan, ctypes.c_double]),'),
    ("_status, [_plan, _i64, _i64, _i64, _i64, _i64, _i64]", "_status, [_plan, _i64, _i64, _i64, _i64, _i64]"),
])
def test_a_changed_python_declaration_fails(tmp_path, old, new, capsys):
    assert bindings(python=changed(tmp_path, PYTHON, old, new)) == 1
    assert "python:" in capsys.readouterr().out


def test_a_new_header_function_needs_bindings(tmp_path, capsys):
    header = changed(tmp_path, HEADER, "/**@}*/\n\n#ifdef __cplusplus",
                     "FLASHSCI_API flashsci_status_t flashsci_plan_set_dropout(flashsci_plan_t plan, float p);\n"
                     "/**@}*/\n\n#ifdef __cplusplus")
    assert bindings(header=header) == 1
    out = capsys.readouterr().out
    assert "rust: missing function flashsci_status_t flashsci_plan_set_dropout(flashsci_plan_t plan, float p)" in out
    assert "python: SIGNATURES lacks flashsci_plan_set_dropout" in out


def test_header_parser_reads_every_declaration():
    h = cheader.parse_file(HEADER)
    n_api = len(re.findall(r"^FLASHSCI_API ", read(HEADER), flags=re.M))
    assert len(h.functions) == n_api >= 15
    assert h.enums["flashsci_mask_t"]["FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT"] == 2
    assert h.functions["flashsci_plan_get_kernel_name"].params[1].type == "const char**"
    assert h.opaque == {"flashsci_plan_t": "flashsci_plan_st", "flashsci_stream_t": "CUstream_st"}
    assert check_bindings.rust_type_to_c("*const *const c_char") == "const char* const*"
    assert check_bindings.rust_type_to_c("*mut *const c_char") == "const char**"


# ---- check_abi --------------------------------------------------------------------------

def stub_library(tmp_path, header, soname, drop=(), extra=()):
    """A shared library exporting the header's functions (as stubs) under `soname`."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    names = [n for n in cheader.parse_file(header).functions if n not in drop] + list(extra)
    src = tmp_path / "stub.c"
    src.write_text("".join(f"int {n}(void) {{ return 0; }}\n" for n in names))
    lib = tmp_path / soname
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), f"-Wl,-soname,{soname}"], check=True)
    return str(lib)


def abi(tmp_path, library, header=HEADER, baseline=BASELINE):
    return check_abi.main(["--library", library, "--header", header, "--baseline", baseline])


def test_unchanged_abi_passes(tmp_path):
    assert abi(tmp_path, stub_library(tmp_path, HEADER, "libflashsci.so.0")) == 0


def test_additions_pass_and_are_reported(tmp_path, capsys):
    header = changed(tmp_path, HEADER, "FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT = 2",
                     "FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT = 2, FLASHSCI_MASK_SLIDING = 3")
    assert abi(tmp_path, stub_library(tmp_path, header, "libflashsci.so.0"), header=header) == 0
    assert "+ enumerator flashsci_mask_t FLASHSCI_MASK_SLIDING = 3" in capsys.readouterr().out


@pytest.mark.parametrize("old,new", [
    ("FLASHSCI_DTYPE_FLOAT32 = 3", "FLASHSCI_DTYPE_FLOAT32 = 4"),                 # a value moved
    ("FLASHSCI_TENSOR_O = 3,   /**< Output", "FLASHSCI_TENSOR_OUT = 3,   /**< Output"),  # an enumerator renamed
    ("float scale);", "double scale);"),                                          # a parameter type
    ("int64_t head_dim);", "int64_t head_dim, int flags);"),                       # an added parameter
])
def test_incompatible_change_fails_without_a_new_major(tmp_path, old, new, capsys):
    header = changed(tmp_path, HEADER, old, new)
    assert abi(tmp_path, stub_library(tmp_path, header, "libflashsci.so.0"), header=header) == 1
    assert "incompatible ABI change" in capsys.readouterr().out


def test_incompatible_change_passes_once_the_major_moved(tmp_path, capsys):
    header = changed(tmp_path, HEADER, "FLASHSCI_DTYPE_FLOAT32 = 3", "FLASHSCI_DTYPE_FLOAT32 = 4")
    header_text = read(header).replace("#define FLASHSCI_VERSION_MAJOR 0", "#define FLASHSCI_VERSION_MAJOR 1")
    with open(header, "w", encoding="utf-8") as f:
        f.write(header_text)
    assert abi(tmp_path, stub_library(tmp_path, header, "libflashsci.so.1"), header=header) == 0
    assert "soname major moved 0 -> 1" in capsys.readouterr().out


def test_removed_export_and_stray_export_fail(tmp_path, capsys):
    assert abi(tmp_path, stub_library(tmp_path, HEADER, "libflashsci.so.0", drop=["flashsci_plan_get_kernel_name"])) == 1
    assert "declared in the header but not exported: flashsci_plan_get_kernel_name" in capsys.readouterr().out
    (tmp_path / "x").mkdir()
    assert abi(tmp_path / "x", stub_library(tmp_path / "x", HEADER, "libflashsci.so.0", extra=["flashsci_secret"])) == 1
    assert "exported but not declared in the header: flashsci_secret" in capsys.readouterr().out


def test_soname_must_follow_the_header_major(tmp_path, capsys):
    assert abi(tmp_path, stub_library(tmp_path, HEADER, "libflashsci.so.1")) == 1
    assert "FLASHSCI_VERSION_MAJOR is 0" in capsys.readouterr().out


def test_the_real_library(tmp_path):
    library = os.environ.get("FLASHSCI_LIBRARY")
    if not library:
        pytest.skip("FLASHSCI_LIBRARY not set")
    assert abi(tmp_path, library) == 0
