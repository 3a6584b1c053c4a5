#!/usr/bin/env python3
"""Regenerates abi_layout_dump.c from include/sinkrouter/sinkrouter.h (run after changing the header)."""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parents[2]
header = (root / "include/sinkrouter/sinkrouter.h").read_text()
structs = re.findall(r"typedef struct (sr_\w+) \{(.*?)\} \1;", header, re.S)
enums = re.findall(r"typedef enum (sr_\w+) \{(.*?)\} \1;", header, re.S)
out = [
    "/* Prints the C ABI of sinkrouter.h as the compiler sees it: struct sizes and field offsets,",
    " * enum values and function names, one fact a line. The binding tests compare their own",
    " * declarations with this output, so a binding that drifts from the header fails its tests.",
    " * Generated from the header by bindings/common/generate_layout_dump.py; do not edit. */",
    "#include <stddef.h>", "#include <stdio.h>", '#include "sinkrouter/sinkrouter.h"', "", "int main(void) {",
]
for name, body in structs:
    out.append(f'  printf("struct {name} %zu\\n", sizeof({name}));')
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    for field in re.findall(r"^\s*[\w\s\*]+?[\s\*](\w+);", body, re.M):
        out.append(f'  printf("field {name}.{field} %zu\\n", offsetof({name}, {field}));')
for name, body in enums:
    for value in re.findall(r"^\s*(SR_\w+)\s*=", body, re.M):
        out.append(f'  printf("enum {name}.{value} %d\\n", (int){value});')
for function in re.findall(r"SR_API [^;(]*?\b(sr_\w+)\(", header):
    out.append(f'  printf("function {function}\\n");')
out += ["  return 0;", "}", ""]
(root / "bindings/common/abi_layout_dump.c").write_text("\n".join(out))
