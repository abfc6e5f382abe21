#!/usr/bin/env python3
"""ABI guard: compares the built library and its header with the committed baseline.

The ABI of libflashsci is: the soname, the exported symbols, the prototypes of the
header's functions, the enumerators' values and the opaque typedefs. This script
writes that down (one line per item, `abi/flashsci.abi`) and compares it:

- incompatible: a symbol, function, enumerator or typedef gone; a prototype (return or
  parameter types) or an enumerator's value changed. That fails, unless the soname's
  major version moved past the baseline's (then: regenerate the baseline).
- compatible: additions. Reported; `--update` pins them in the baseline.
- always checked: every exported symbol is declared in the header and every function
  of the header is exported, and the soname's major equals FLASHSCI_VERSION_MAJOR.

Usage: check_abi.py --library build/libflashsci.so [--header include/flashsci.h]
                    [--baseline abi/flashsci.abi] [--update]
(The library may be given as the path of any of its links; readelf and nm from binutils.)
"""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cheader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exported_symbols(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True).stdout
    symbols = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TDBRVWiu":
            symbols.add(parts[2].split("@")[0])
    return symbols


def soname(library):
    out = subprocess.run(["readelf", "-d", library], check=True, capture_output=True, text=True).stdout
    m = re.search(r"\(SONAME\).*\[(.+)\]", out)
    if not m:
        raise SystemExit(f"{library}: no SONAME")
    return m.group(1)


def soname_major(name):
    m = re.fullmatch(r"lib\w+\.so\.(\d+)", name)
    if not m:
        raise SystemExit(f"soname {name!r} is not lib<name>.so.<major>")
    return int(m.group(1))


def describe(header, symbols, so):
    """The ABI as a set of lines."""
    lines = {f"soname {so}"}
    lines |= {f"symbol {s}" for s in symbols}
    for f in header.functions.values():
        lines.add(f"function {f.name}({', '.join(p.type for p in f.params)}) -> {f.ret}")
    for enum, values in header.enums.items():
        lines |= {f"enumerator {enum} {name} = {value}" for name, value in values.items()}
    lines |= {f"typedef {name} = struct {tag}*" for name, tag in header.opaque.items()}
    return lines


def key(line):
    """What identifies an item: everything before its value."""
    kind, rest = line.split(" ", 1)
    if kind == "function":
        return f"function {rest.split('(')[0]}"
    if kind in ("enumerator", "typedef"):
        return f"{kind} {rest.split(' = ')[0]}"
    if kind == "soname":
        return "soname"
    return line


def read_baseline(path):
    with open(path, encoding="utf-8") as f:
        return {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}


def write_baseline(path, lines):
    order = {"soname": 0, "symbol": 1, "function": 2, "typedef": 3, "enumerator": 4}
    with open(path, "w", encoding="utf-8") as f:
        f.write("# libflashsci ABI baseline, written by abi/check_abi.py --update; checked in CI.\n")
        f.write("# Items may be added; none may change or go without a new soname major.\n")
        for ln in sorted(lines, key=lambda s: (order[s.split(' ')[0]], s)):
            f.write(ln + "\n")


def compare(baseline, current):
    """(incompatible, added) lists of text."""
    base_by_key = {key(ln): ln for ln in baseline}
    cur_by_key = {key(ln): ln for ln in current}
    incompatible, added = [], []
    for k, ln in sorted(base_by_key.items()):
        if k == "soname":
            continue
        if k not in cur_by_key:
            incompatible.append(f"removed: {ln}")
        elif cur_by_key[k] != ln:
            incompatible.append(f"changed: {ln}\n       now: {cur_by_key[k]}")
    for k, ln in sorted(cur_by_key.items()):
        if k not in base_by_key:
            added.append(ln)
    return incompatible, added


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True)
    ap.add_argument("--header", default=os.path.join(ROOT, "include", "flashsci.h"))
    ap.add_argument("--baseline", default=os.path.join(ROOT, "abi", "flashsci.abi"))
    ap.add_argument("--update", action="store_true", help="write the current ABI as the baseline")
    args = ap.parse_args(argv)

    header = cheader.parse_file(args.header)
    symbols = exported_symbols(args.library)
    so = soname(args.library)
    errors = []

    # Consistency of this build, whatever the baseline says.
    declared = set(header.functions)
    for s in sorted(symbols - declared):
        errors.append(f"exported but not declared in the header: {s}")
    for s in sorted(declared - symbols):
        errors.append(f"declared in the header but not exported: {s}")
    major = soname_major(so)
    if major != header.version["MAJOR"]:
        errors.append(f"soname {so} but FLASHSCI_VERSION_MAJOR is {header.version['MAJOR']}")

    current = describe(header, symbols, so)
    if args.update:
        if errors:
            print("not updating the baseline:\n  " + "\n  ".join(errors))
            return 1
        write_baseline(args.baseline, current)
        print(f"wrote {args.baseline}: {len(current)} items")
        return 0

    baseline = read_baseline(args.baseline)
    base_so = next((ln.split(" ", 1)[1] for ln in baseline if ln.startswith("soname ")), None)
    if base_so is None:
        errors.append(f"{args.baseline} names no soname")
        base_major = major
    else:
        base_major = soname_major(base_so)
    incompatible, added = compare(baseline, current)

    if major < base_major:
        errors.append(f"soname major went back: baseline {base_so}, library {so}")
    if incompatible:
        if major > base_major:
            print(f"soname major moved {base_major} -> {major}: {len(incompatible)} incompatible change(s) allowed; "
                  f"regenerate the baseline with --update")
            for c in incompatible:
                print("  " + c)
        else:
            errors.append(f"incompatible ABI change(s) with soname {so} (baseline {base_so}); "
                          "keep the ABI, or bump FLASHSCI_VERSION_MAJOR (the soname) and regenerate the baseline:")
            errors += ["  " + c for c in incompatible]
    if added:
        print(f"{len(added)} addition(s) not yet in the baseline (compatible; pin them with --update):")
        for ln in added:
            print("  + " + ln)
    if errors:
        print("ABI check FAILED:")
        for e in errors:
            print("  " + e)
        return 1
    print(f"ABI check passed: {so}, {len(symbols)} exported symbols, {len(header.functions)} prototypes, "
          f"{sum(len(v) for v in header.enums.values())} enumerators match {os.path.relpath(args.baseline)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
