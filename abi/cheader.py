"""Reads the declarations of include/flashsci.h: functions, enumerations, typedefs, version.

The header is plain C99 in a fixed style (one `FLASHSCI_API` prototype per function,
`typedef enum name { A = 0, ... } name_t;`, `typedef struct x* y;`), so a small
tokenising parser is enough; anything it cannot read is an error, not a silent skip.
Types are normalised to one spelling: words joined by one space, `*` attached to the
left ("const char**", "flashsci_plan_t*", "const char* const*").
"""

import re
from dataclasses import dataclass, field


class ParseError(Exception):
    pass


@dataclass(frozen=True)
class Param:
    type: str
    name: str


@dataclass(frozen=True)
class Function:
    name: str
    ret: str
    params: tuple  # of Param

    def signature(self, names=True):
        args = ", ".join(f"{p.type} {p.name}" if names else p.type for p in self.params) or "void"
        return f"{self.ret} {self.name}({args})"


@dataclass
class Header:
    functions: dict = field(default_factory=dict)  # name -> Function
    enums: dict = field(default_factory=dict)  # typedef name -> {enumerator: value}
    opaque: dict = field(default_factory=dict)  # typedef name -> struct tag (typedef struct tag* name)
    version: dict = field(default_factory=dict)  # MAJOR/MINOR/PATCH -> int


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def normalise_type(words):
    """['const', 'char', '*', '*'] -> 'const char**'."""
    out = ""
    for w in words:
        if w == "*":
            out += "*"
        else:
            out += (" " if out else "") + w
    return out


def split_decl(decl):
    """'const char** name' -> ('const char**', 'name')."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\*", decl)
    if len(tokens) < 2 or tokens[-1] == "*":
        raise ParseError(f"cannot read the declaration {decl.strip()!r} (type and name expected)")
    return normalise_type(tokens[:-1]), tokens[-1]


def parse(text):
    """The Header of the header file's text."""
    h = Header()
    for m in re.finditer(r"#define\s+FLASHSCI_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)", text):
        h.version[m.group(1)] = int(m.group(2))
    code = strip_comments(text).replace("\\\n", " ")
    code = re.sub(r"^\s*#.*$", " ", code, flags=re.M)  # preprocessor lines

    for m in re.finditer(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", code, flags=re.S):
        values, next_value = {}, 0
        for item in (i.strip() for i in m.group(2).split(",")):
            if not item:
                continue
            em = re.fullmatch(r"(\w+)(?:\s*=\s*(-?(?:0x[0-9a-fA-F]+|\d+)))?", item)
            if not em:
                raise ParseError(f"enum {m.group(3)}: cannot read the enumerator {item!r}")
            value = int(em.group(2), 0) if em.group(2) is not None else next_value
            values[em.group(1)] = value
            next_value = value + 1
        h.enums[m.group(3)] = values

    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\*\s*(\w+)\s*;", code):
        h.opaque[m.group(2)] = m.group(1)

    for m in re.finditer(r"FLASHSCI_API\s+([^;{]*?)\(([^)]*)\)\s*;", code, flags=re.S):
        ret, name = split_decl(m.group(1))
        params_text = m.group(2).strip()
        params = ()
        if params_text != "void":
            params = tuple(Param(*split_decl(p)) for p in params_text.split(","))
        if name in h.functions:
            raise ParseError(f"{name} declared twice")
        h.functions[name] = Function(name, ret, params)

    declared = len(re.findall(r"\bFLASHSCI_API\b", code))
    if declared != len(h.functions):
        raise ParseError(f"read {len(h.functions)} of {declared} FLASHSCI_API declarations")
    if not h.functions or not h.enums:
        raise ParseError("no functions or no enumerations found: is this flashsci.h?")
    if set(h.version) != {"MAJOR", "MINOR", "PATCH"}:
        raise ParseError("FLASHSCI_VERSION_MAJOR/MINOR/PATCH not all found")
    return h


def parse_file(path):
    with open(path, encoding="utf-8") as f:
        return parse(f.read())
