"""Two sr_gpu_bench CSVs of one device run side by side (a build against the one before it, on
the same warm machine): pipelined and per-call microseconds per case and their ratio, the
median ratio last. A structure-only change should sit within run-to-run spread (about 1%).

    compare_builds.py BEFORE_CSV AFTER_CSV
"""
import csv
import statistics
import sys


def rows(path):
    return {(r["data"], int(r["batch"]), int(r["length"]), r["method"]): r for r in csv.DictReader(open(path))}


def main(before_csv, after_csv):
    before, after = rows(before_csv), rows(after_csv)
    ratios = []
    print(f"{'case':<34} {'pipelined before/after us':>26} {'ratio':>7} {'per call before/after us':>26}")
    for key in sorted(set(before) & set(after), key=lambda k: (k[0], k[1], k[2], k[3])):
        b, a = before[key], after[key]
        pb, pa = float(b["pipelined_us"]), float(a["pipelined_us"])
        ratio = pa / pb
        ratios.append(ratio)
        name = f"{key[0]} {key[1]}x{key[2] // 1024}K {key[3]}"
        print(f"{name:<34} {pb:>12.1f} {pa:>12.1f} {ratio:>7.3f} {float(b['per_call_us']):>12.1f} {float(a['per_call_us']):>12.1f}")
    if ratios:
        print(f"after/before pipelined: median {statistics.median(ratios):.3f}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f} over {len(ratios)} cases")


if __name__ == "__main__":
    main(*sys.argv[1:3])
