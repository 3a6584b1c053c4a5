"""The ctypes declarations in sinkrouter._abi match the header as the C compiler sees it.

SR_ABI_LAYOUT_DUMP names the sr_abi_layout_dump program (CTest sets it); without it the test
fails rather than skips, so a missing comparison is never mistaken for a passing one.
"""
from __future__ import annotations

import ctypes
import enum
import os
import subprocess

import pytest

from sinkrouter import _abi


@pytest.fixture(scope="module")
def layout():
    program = os.environ.get("SR_ABI_LAYOUT_DUMP")
    if not program:
        pytest.fail("SR_ABI_LAYOUT_DUMP is unset: point it at build/<preset>/bindings/sr_abi_layout_dump")
    facts = {"struct": {}, "field": {}, "enum": {}, "function": set()}
    for line in subprocess.run([program], check=True, capture_output=True, text=True).stdout.splitlines():
        kind, *rest = line.split()
        if kind == "function":
            facts["function"].add(rest[0])
        else:
            facts[kind][rest[0]] = int(rest[1])
    assert facts["struct"] and facts["enum"] and facts["function"], "the layout dump printed nothing"
    return facts


def test_struct_sizes_and_field_offsets_match(layout):
    assert sorted(layout["struct"]) == sorted(s.__name__ for s in _abi.C_STRUCTS)
    for struct in _abi.C_STRUCTS:
        name = struct.__name__
        assert ctypes.sizeof(struct) == layout["struct"][name], f"sizeof({name})"
        c_fields = {f.split(".", 1)[1]: offset for f, offset in layout["field"].items() if f.startswith(name + ".")}
        py_fields = {field: getattr(struct, field).offset for field, _ in struct._fields_}
        assert py_fields == c_fields, f"fields of {name} (name -> offset)"


def python_member_name(c_name: str, prefix: str) -> str:
    return c_name[len(prefix):] if c_name.startswith(prefix) else c_name[len("SR_"):]


def test_enum_values_match(layout):
    c_enums = {}
    for qualified, value in layout["enum"].items():
        enum_name, member = qualified.split(".")
        c_enums.setdefault(enum_name, {})[member] = value
    assert sorted(c_enums) == sorted(_abi.C_ENUMS)
    for enum_name, members in c_enums.items():
        python_enum, prefix = _abi.C_ENUMS[enum_name]
        expected = {python_member_name(member, prefix): value for member, value in members.items()}
        assert {m.name: m.value for m in python_enum} == expected, enum_name
        assert issubclass(python_enum, enum.IntEnum)


def test_every_function_is_declared(layout):
    assert set(_abi.FUNCTIONS) == layout["function"]
