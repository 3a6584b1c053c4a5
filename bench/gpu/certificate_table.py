"""The table of run_device.sh's `certificate` phase: per (data, length, method) the float64
oracle and ideal certified skip of V (sr_budget_headroom: exact normalizer, no split shares, no
safety margin; sum of norms, tree-min, compensated), then the GPU's skip, pipelined time and
median bound/error under each routed bound (sum of norms, the pages' tree terms with
compensation, the node tree), with the speed-ups over the faster SDPA backend and over our
dense step measured in the same call. Markdown on stdout.

  certificate_table.py certificate.log certificate_headroom.txt certificate_peers.jsonl
"""
import json
import re
import sys

BOUNDS = ["sum-of-norms", "page-terms", "node-tree"]
LINE = re.compile(r"bound=(\S+)\s+(\S+)\s+B=(\d+)\s+N=(\d+)\s+(\S+)\s+per-call\s+([\d.]+) us .*?pipelined\s+([\d.]+) us"
                  r"\s+skip ([\d.]+) bound (\S+) err (\S+) bound/err (\S+)")
SKIPPED = re.compile(r"summary (\S+) (\d+) budget (\S+): V pages skipped oracle ([\d.]+)% certified ([\d.]+)% "
                     r"tree-min ([\d.]+)% compensated ([\d.]+)%")
TIGHTNESS = re.compile(r"summary (\S+) (\d+): median E/true .*sum of norms ([\d.]+), tree-min ([\d.]+), compensated ([\d.]+)")


def main():
    log, headroom, peers = sys.argv[1:4]
    ours = {}  # (data, length, method, bound) -> (pipelined us, skip, bound/err)
    for line in open(log):
        m = LINE.search(line)
        if m:
            bound, data, _, length, method = m.group(1), m.group(2), m.group(3), int(m.group(4)), m.group(5)
            ours[(data, length, method, bound)] = (float(m.group(7)), float(m.group(8)), float(m.group(11)))
    ideal, tightness = {}, {}
    for line in open(headroom):
        m = SKIPPED.search(line)
        if m:
            ideal[(m.group(1), int(m.group(2)), float(m.group(3)))] = tuple(float(m.group(i)) / 100 for i in (4, 5, 6, 7))
        m = TIGHTNESS.search(line)
        if m:
            tightness[(m.group(1), int(m.group(2)))] = (float(m.group(3)), float(m.group(4)), float(m.group(5)))
    sdpa = {}
    device = "?"
    for line in open(peers):
        row = json.loads(line)
        if row.get("kind") == "device":
            device = row["name"]
        elif "pipelined_us" in row and row["batch"] == 1:
            best = sdpa.get(row["length"])
            sdpa[row["length"]] = min(best, row["pipelined_us"]) if best else row["pipelined_us"]

    print(f"Certificate on {device} (pipelined us; skip = V blocks skipped / scored; ideal = float64, "
          "global bound, sr_budget_headroom)\n")
    print("| data | N | method | oracle skip | ideal sum-of-norms / tree-min / compensated skip | GPU skip sum-of-norms / "
          "page terms / node tree | us sum-of-norms / page terms / node tree | page terms vs SDPA, vs dense "
          "| bound/err (GPU, <=128K) | ideal E/true sum-of-norms / tree-min / compensated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = sorted({k[:3] for k in ours if k[3] in BOUNDS})
    for data, length, method in cases:
        budget = float(method.replace("fp8-", "").replace("budget", ""))
        runs = [ours.get((data, length, method, b)) for b in BOUNDS]
        dense = ours.get((data, length, "fp8-dense" if method.startswith("fp8") else "dense", "dense"))
        o = ideal.get((data, length, budget))
        t = tightness.get((data, length))
        default = runs[1]

        def cell(i, fmt):
            return "/".join(fmt(r[i]) if r else "-" for r in runs)

        ratio = "-"
        if default:
            parts = []
            if length in sdpa:
                parts.append(f"{sdpa[length] / default[0]:.2f}x")
            if dense:
                parts.append(f"{dense[0] / default[0]:.2f}x")
            ratio = ", ".join(parts)
        print(f"| {data} | {length} | {method} | {o[0]:.3f} |" if o else f"| {data} | {length} | {method} | - |", end="")
        print(f" {o[1]:.3f} / {o[2]:.3f} / {o[3]:.3f} |" if o else " - |", end="")
        print(f" {cell(1, lambda v: f'{v:.3f}')} | {cell(0, lambda v: f'{v:.1f}')} | {ratio} |"
              f" {cell(2, lambda v: f'{v:.1f}')} |", end="")
        print(f" {t[0]:.1f} / {t[1]:.1f} / {t[2]:.1f} |" if t else " - |")
    for length in sorted(sdpa):
        print(f"\nfaster SDPA backend 1x{length}: {sdpa[length]:.1f} us pipelined", end="")
    for (data, length, method, bound), run in sorted(ours.items()):
        if bound == "dense":
            print(f"\nours {data} 1x{length} {method}: {run[0]:.1f} us pipelined", end="")
    print()


if __name__ == "__main__":
    main()
