#!/usr/bin/env python3
"""Checks that the bindings declare exactly what include/flashsci.h declares.

  Rust   (bindings/rust/flashsci-sys/src/lib.rs): every function with the same
         parameter names and types (mapped to C) and return type, every enumeration as
         an integer type alias with one constant per enumerator of the same value, the
         opaque typedefs, the version constants; nothing extra named flashsci_*/FLASHSCI_*.
  Python (bindings/python/flashsci/_lib.py): every function in SIGNATURES with ctypes
         types of the right kind and arity, every enumerator constant with its value.

Usage: check_bindings.py [--header H] [--rust LIB_RS] [--python LIB_PY]
Exits 1 and lists every difference when anything differs.
"""

import argparse
import ctypes
import importlib.util
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cheader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Rust scalar types of the sys crate and their C spelling.
RUST_TO_C = {
    "c_int": "int", "c_uint": "unsigned int", "c_char": "char", "c_void": "void", "c_float": "float",
    "f32": "float", "f64": "double", "i64": "int64_t", "u64": "uint64_t", "i32": "int32_t",
    "u32": "uint32_t", "usize": "size_t", "isize": "ptrdiff_t",
}
# The C types an enumeration's typedef may alias (GCC gives a non-negative enum unsigned int).
ENUM_REPR = {"c_uint", "c_int"}


def rust_type_to_c(t):
    """'*mut *const c_char' -> 'const char**'; typedef names pass through."""
    t = t.strip()
    for prefix, const in (("*const", True), ("*mut", False)):
        if t.startswith(prefix + " ") or t.startswith(prefix + "*"):
            inner = rust_type_to_c(t[len(prefix):])
            if const:
                inner = inner + " const" if inner.endswith("*") else "const " + inner
            return inner + "*"
    t = re.sub(r"^(::)?(core|std)::(ffi|os::raw)::", "", t)
    return RUST_TO_C.get(t, t)


def strip_rust_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def rust_decls(text):
    """(functions: name -> Function, consts: name -> (type, value text), types: name -> aliased, structs)."""
    code = strip_rust_comments(text)
    code = re.sub(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*\Z", "", code, flags=re.S)  # the tests module is last
    functions = {}
    for block in re.finditer(r'extern\s+"C"\s*\{(.*?)\n\}', code, flags=re.S):
        for m in re.finditer(r"pub\s+fn\s+(\w+)\s*\((.*?)\)\s*(?:->\s*([^;]+))?;", block.group(1), flags=re.S):
            params = []
            for p in (p.strip() for p in m.group(2).split(",")):
                if not p:
                    continue
                pm = re.fullmatch(r"(\w+)\s*:\s*(.+)", p, flags=re.S)
                if not pm:
                    raise cheader.ParseError(f"rust: {m.group(1)}: cannot read parameter {p!r}")
                params.append(cheader.Param(rust_type_to_c(pm.group(2)), pm.group(1)))
            ret = rust_type_to_c(m.group(3)) if m.group(3) else "void"
            functions[m.group(1)] = cheader.Function(m.group(1), ret, tuple(params))
    consts = {m.group(1): (m.group(2).strip(), m.group(3).strip())
              for m in re.finditer(r"pub\s+const\s+(\w+)\s*:\s*([^=]+)=\s*([^;]+);", code)}
    types = {m.group(1): m.group(2).strip() for m in re.finditer(r"pub\s+type\s+(\w+)\s*=\s*([^;]+);", code)}
    structs = set(re.findall(r"#\[repr\(C\)\]\s*pub\s+struct\s+(\w+)", code))
    return functions, consts, types, structs


def check_rust(header, text):
    errors = []
    functions, consts, types, structs = rust_decls(text)
    for name, f in header.functions.items():
        r = functions.get(name)
        if r is None:
            errors.append(f"rust: missing function {f.signature()}")
        elif r != f:
            errors.append(f"rust: {name} differs\n    header: {f.signature()}\n    rust:   {r.signature()}")
    for name in functions.keys() - header.functions.keys():
        errors.append(f"rust: function {name} is not in the header")

    enumerators = {}
    for enum, values in header.enums.items():
        alias = types.get(enum)
        if alias is None:
            errors.append(f"rust: missing `pub type {enum} = c_uint;`")
        elif alias not in ENUM_REPR:
            errors.append(f"rust: {enum} aliases {alias}, expected one of {sorted(ENUM_REPR)}")
        for name, value in values.items():
            enumerators[name] = (enum, value)
            c = consts.get(name)
            if c is None:
                errors.append(f"rust: missing `pub const {name}: {enum} = {value};`")
                continue
            ctype, ctext = c
            if ctype != enum:
                errors.append(f"rust: {name} has type {ctype}, expected {enum}")
            try:
                rvalue = int(ctext, 0)
            except ValueError:
                errors.append(f"rust: {name} = {ctext} is not an integer literal")
                continue
            if rvalue != value:
                errors.append(f"rust: {name} = {rvalue}, the header says {value}")
    for part, value in header.version.items():
        name = f"FLASHSCI_VERSION_{part}"
        c = consts.get(name)
        if c is None or c[1] != str(value):
            errors.append(f"rust: {name} is {c[1] if c else 'missing'}, the header says {value}")
    allowed_consts = set(enumerators) | {f"FLASHSCI_VERSION_{p}" for p in header.version} | {"FLASHSCI_VERSION"}
    for name in consts.keys() - allowed_consts:
        if name.upper().startswith("FLASHSCI_"):
            errors.append(f"rust: constant {name} is not in the header")

    for typedef, tag in header.opaque.items():
        alias = types.get(typedef)
        if alias is None or rust_type_to_c(alias) != f"{tag}*":
            errors.append(f"rust: expected `pub type {typedef} = *mut {tag};`, found {alias!r}")
        if tag not in structs:
            errors.append(f"rust: missing the opaque `#[repr(C)] pub struct {tag}`")
    for name in types.keys() - header.enums.keys() - header.opaque.keys():
        if name.startswith("flashsci_"):
            errors.append(f"rust: type {name} is not in the header")
    return errors


def ctypes_kind(t):
    """The ABI class of a ctypes type: 'int', 'int64', 'size', 'float', 'double', 'pointer', 'void'."""
    if t is None:
        return "void"
    if t in (ctypes.c_void_p, ctypes.c_char_p) or (isinstance(t, type) and issubclass(t, ctypes._Pointer)):
        return "pointer"
    if t is ctypes.c_float:
        return "float"
    if t is ctypes.c_double:
        return "double"
    if t is ctypes.c_size_t:  # unsigned; c_int64 and c_ssize_t are both c_long on LP64
        return "size"
    if t in (ctypes.c_int64, ctypes.c_longlong):
        return "int64"
    if t in (ctypes.c_int, ctypes.c_uint, ctypes.c_int32, ctypes.c_uint32):
        return "int"
    return f"unknown ctypes type {t!r}"


def c_kind(t, header):
    if t.endswith("*") or t in header.opaque:
        return "pointer"
    if t in header.enums or t in ("int", "unsigned int"):
        return "int"
    return {"int64_t": "int64", "size_t": "size", "float": "float", "double": "double", "void": "void"}.get(
        t, f"unknown C type {t}")


def check_python(header, path):
    spec = importlib.util.spec_from_file_location("flashsci_lib_under_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    errors = []
    sigs = mod.SIGNATURES
    for name, f in header.functions.items():
        if name not in sigs:
            errors.append(f"python: SIGNATURES lacks {name}")
            continue
        restype, argtypes = sigs[name]
        want = [c_kind(p.type, header) for p in f.params]
        got = [ctypes_kind(a) for a in argtypes]
        if want != got:
            errors.append(f"python: {name} arguments are {got}, the header's are {want}")
        # A function returning a string is declared c_char_p; other pointers c_void_p.
        if ctypes_kind(restype) != c_kind(f.ret, header):
            errors.append(f"python: {name} returns {ctypes_kind(restype)}, the header's {f.ret} is {c_kind(f.ret, header)}")
    for name in sigs.keys() - header.functions.keys():
        errors.append(f"python: SIGNATURES has {name}, which the header lacks")
    # Enumerator constants: FLASHSCI_STATUS_SUCCESS -> STATUS_SUCCESS in _lib.
    for values in header.enums.values():
        for name, value in values.items():
            short = name[len("FLASHSCI_"):]
            if getattr(mod, short, None) != value:
                errors.append(f"python: {short} is {getattr(mod, short, 'missing')}, the header says {value}")
    for name, value in header.enums.get("flashsci_status_t", {}).items():
        if mod.STATUS_NAMES.get(value) != name[len("FLASHSCI_STATUS_"):]:
            errors.append(f"python: STATUS_NAMES[{value}] should be {name[len('FLASHSCI_STATUS_'):]}")
    return errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "flashsci.h"))
    ap.add_argument("--rust", default=os.path.join(ROOT, "bindings", "rust", "flashsci-sys", "src", "lib.rs"))
    ap.add_argument("--python", default=os.path.join(ROOT, "bindings", "python", "flashsci", "_lib.py"))
    args = ap.parse_args(argv)
    header = cheader.parse_file(args.header)
    with open(args.rust, encoding="utf-8") as f:
        errors = check_rust(header, f.read())
    errors += check_python(header, args.python)
    n_enum = sum(len(v) for v in header.enums.values())
    if errors:
        print(f"bindings differ from {args.header}:")
        for e in errors:
            print("  " + e)
        return 1
    print(f"bindings match {os.path.relpath(args.header)}: {len(header.functions)} functions, "
          f"{len(header.enums)} enumerations ({n_enum} enumerators), {len(header.opaque)} opaque types "
          f"in Rust ({os.path.relpath(args.rust)}) and Python ({os.path.relpath(args.python)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
