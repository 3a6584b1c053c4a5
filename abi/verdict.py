#!/usr/bin/env python3
"""Reads an abidiff report (baseline vs build) on stdin and says whether the build is compatible.

Compatible: nothing removed, and every change is a struct_size struct growing at its end (the
header's convention: a caller built against an older header passes its smaller struct_size).
abidiff already leaves out appended enumerators. Anything else (a field moved, removed, retyped
or inserted before the end, a renumbered enumerator, a changed signature) is incompatible.
libabigail's own suppression properties were not used for this: abidiff 2.2 filtered a moved
field with `has_data_member_inserted_at = end` (abi/selftest.sh covers that case).

Prints one line per reason and exits 0 (compatible) or 1 (incompatible).
"""
import re
import sys

GROWABLE = re.compile(r"underlying type 'struct (sr_context_options|sr_kv_cache_options|sr_kv_io|sr_decode_args|sr_decode_stats)' changed:")
# Lines that only locate a change; they say nothing about compatibility by themselves.
STRUCTURE = [
    re.compile(p) for p in (
        r"^Functions changes summary: ",
        r"^Variables changes summary: ",
        r"^\d+ functions? with some indirect sub-type changes?:$",
        r"^\[C\] '(function|method) .*' has some indirect sub-type changes:$",
        r"^parameter \d+ of type '.*' has sub-type changes:$",
        r"^in pointed to type '.*':$",
        r"^in unqualified underlying type '.*':$",
        r"^underlying type 'struct .*' changed:$",
        r"^\d+ data member insertions?:$",
        # abidiff filters only what it judges harmless: here, an enumerator appended to the enum
        # type of a field (sr_dtype of q_dtype) in a struct that also grew.
        r"^no data member changes? \(\d+ filtered\);?$",
        r"^\d+ Added (functions?|variables?):$",  # additions are compatible
        r"^\[A\] ",
    )
]
SIZE = re.compile(r"^type size changed from (\d+) to (\d+) \(in bits\)$")
INSERTED = re.compile(r"^'.*', at offset (\d+) \(in bits\)$")


def main() -> int:
    reasons = []
    growable = False
    old_size = None
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        summary = re.match(r"^(Functions|Variables) changes summary: (\d+) Removed", line)
        if summary and int(summary.group(2)) > 0:
            reasons.append(f"removed: {line}")
        if line.startswith("underlying type "):
            growable = bool(GROWABLE.match(line))
            old_size = None
        size = SIZE.match(line)
        inserted = INSERTED.match(line)
        if size and growable and int(size.group(2)) > int(size.group(1)):
            old_size = int(size.group(1))
        elif inserted and growable and old_size is not None and int(inserted.group(1)) >= old_size:
            pass  # a member appended after the old end
        elif any(p.match(line) for p in STRUCTURE):
            pass
        else:
            reasons.append(f"incompatible: {line}")
    for reason in reasons:
        print(reason)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
