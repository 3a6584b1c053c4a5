"""The C types behind sinkrouter._abi match the header's declarations.

The layout dump gives sizes and offsets, which cannot tell a float padded to 8 bytes from a
double, nor check function parameters at all. This test reads the header's struct fields and
function prototypes and maps each C type to the ctypes type it must be declared with.
"""
from __future__ import annotations

import ctypes
import pathlib
import re

import pytest

from sinkrouter import _abi

HEADER = pathlib.Path(__file__).resolve().parents[3] / "include" / "sinkrouter" / "sinkrouter.h"

SCALARS = {
    "size_t": ctypes.c_size_t, "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "sr_seq_id": ctypes.c_int64,
    "float": ctypes.c_float, "double": ctypes.c_double, "unsigned": ctypes.c_uint, "void": None,
}
HANDLES = {"sr_context", "sr_kv_cache"}


def ctypes_type(declaration: str, pointers_as_void: bool = False):
    """The ctypes type a C declaration such as 'const sr_kv_io*' is mirrored with. Struct
    fields that point at buffers are declared void* (pointers_as_void), to take plain ints."""
    text = re.sub(r"\bconst\b", "", declaration).strip()
    stars = text.count("*")
    base = text.replace("*", "").strip()
    if stars and pointers_as_void:
        return ctypes.c_void_p
    if base in HANDLES or (base == "void" and stars == 1):
        inner, stars = ctypes.c_void_p, stars - 1  # opaque handles and raw buffers travel as void*
    elif base == "char" and stars >= 1:
        inner, stars = ctypes.c_char_p, stars - 1
    elif base in SCALARS:
        inner = SCALARS[base]
    elif base in _abi.C_ENUMS:
        inner = _abi.c_enum
    else:
        inner = getattr(_abi, base)  # a struct
    for _ in range(stars):
        inner = ctypes.POINTER(inner)
    return inner


def uncomment(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


@pytest.fixture(scope="module")
def header():
    assert HEADER.exists(), HEADER
    return uncomment(HEADER.read_text())


def test_struct_field_types(header):
    structs = re.findall(r"typedef struct (sr_\w+) \{(.*?)\} \1;", header, re.S)
    assert sorted(name for name, _ in structs) == sorted(s.__name__ for s in _abi.C_STRUCTS)
    for name, body in structs:
        fields = re.findall(r"([\w\s\*]+?)\s*\b(\w+);", body)
        declared = [(field, ctypes_type(c_type, pointers_as_void=True)) for c_type, field in fields]
        assert getattr(_abi, name)._fields_ == declared, name


def test_function_signatures(header):
    prototypes = re.findall(r"SR_API ([^;(]*?)\b(sr_\w+)\(([^)]*)\);", header)
    assert sorted(name for _, name, _ in prototypes) == sorted(_abi.FUNCTIONS)
    for result, name, parameters in prototypes:
        arguments = [] if parameters.strip() == "void" else [
            ctypes_type(re.sub(r"\w+$", "", p.strip())) for p in parameters.split(",")]
        restype, argtypes = _abi.FUNCTIONS[name]
        assert restype == ctypes_type(result), f"{name} returns"
        assert argtypes == arguments, f"{name} parameters"
