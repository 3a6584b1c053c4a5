#!/usr/bin/env python3
"""Phases of every block of one traced decode launch: the file a tracing build writes
(CMake SR_CUDA_PHASE_TRACE=ON, SINKROUTER_PHASE_TRACE=FILE; backends/gpu/kernels/phase_trace.cuh).

  trace_phases.py FILE

Prints, in microseconds, the median / p10 / p90 / max over blocks of each phase, and the phases
of the block that ended last (the launch's critical path)."""
import statistics
import struct
import sys

STAMPS = 8   # kTraceStamps
BLOCKS = 4096  # kTraceBlocks
# (name, from stamp, to stamp); stamps: entry, ready, split done, partial written, arrived,
# merge states, merge end, SM
PHASES = [("ready", 0, 1), ("split", 1, 2), ("partial", 2, 3), ("arrive", 3, 4),
          ("merge states", 4, 5), ("merge outputs", 5, 6)]


def main(path):
    data = open(path, "rb").read()
    splits, tiles, batch, stamps = struct.unpack("4I", data[:16])
    assert stamps == STAMPS, "a trace of another layout"
    n = min(splits * tiles * batch, BLOCKS)
    values = struct.unpack(f"{BLOCKS * STAMPS}Q", data[16:16 + BLOCKS * STAMPS * 8])
    blocks = [values[STAMPS * i:STAMPS * (i + 1)] for i in range(n)]
    t0 = min(b[0] for b in blocks)
    rows = []
    for b in blocks:
        row = {"start": (b[0] - t0) / 1e3}
        for name, a, z in PHASES:
            row[name] = (b[z] - b[a]) / 1e3 if b[z] and b[a] else None  # 0: not reached (no merge)
        row["end"] = (max(b[:7]) - t0) / 1e3
        row["sm"] = b[7]
        rows.append(row)
    merged = sum(r["merge outputs"] is not None for r in rows)
    print(f"{n} blocks ({splits} splits x {tiles} head tiles x {batch}), {merged} merged, "
          f"{len({r['sm'] for r in rows})} SMs; kernel body {max(r['end'] for r in rows):.2f} us")
    for key in ["start"] + [p[0] for p in PHASES] + ["end"]:
        v = sorted(r[key] for r in rows if r[key] is not None)
        print(f"  {key:14s} med {statistics.median(v):7.2f}  p10 {v[len(v) // 10]:7.2f}  "
              f"p90 {v[9 * len(v) // 10]:7.2f}  max {v[-1]:7.2f}")
    last = max(rows, key=lambda r: r["end"])
    print("  last to end:   " + ", ".join(f"{k} {last[k]:.2f}" for k in ["start"] + [p[0] for p in PHASES] + ["end"]
                                         if last[k] is not None))


if __name__ == "__main__":
    main(sys.argv[1])
