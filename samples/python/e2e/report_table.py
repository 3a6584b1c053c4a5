"""The run's table and its context as Markdown (printed, and written to bench/E2E.md)."""
from __future__ import annotations

from checks import Check
from scoring import ModeResult


def _bound(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def mode_table(results: list[ModeResult]) -> str:
    dense = next(r for r in results if r.mode.label == "dense")
    rows = ["| mode | bits/byte | change vs dense | V blocks skipped | largest certified bound | heads recomputed "
            "| decode ms/step, in loop | decode us/step, replay at full context |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        delta = r.bits_per_byte - dense.bits_per_byte
        change = "-" if r is dense else f"{delta:+.5f} ({delta / dense.bits_per_byte:+.3%})"
        if r.stats is None:
            skipped = recomputed = in_loop = replay = "-"
        else:
            s = r.stats
            skipped = f"{s.v_skip_fraction:.1%}"
            recomputed = f"{s.heads_recomputed} ({s.heads_recomputed / s.heads:.2%})" if s.heads else "0"
            in_loop = f"{1e3 * r.decode_seconds / r.steps:.3f}"
            replay = "-" if r.replay_seconds is None else f"{1e6 * r.replay_seconds:.1f}"
        bound = "-" if r.stats is None else _bound(max(r.max_head_bound, r.stats.max_error_bound))
        rows.append(f"| {r.mode.label} | {r.bits_per_byte:.5f} | {change} | {skipped} | {bound} | {recomputed} "
                    f"| {in_loop} | {replay} |")
    return "\n".join(rows)


def markdown_report(title: str, facts: list[tuple[str, str]], results: list[ModeResult], checks: list[Check],
                    notes: list[str]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{name}**: {value}" for name, value in facts]
    lines += ["", mode_table(results), ""]
    for note in notes:
        lines += [note, ""]
    lines += ["Checks:", ""]
    lines += [f"- [{'x' if c.passed else ' '}] {c.name}: {c.detail}" for c in checks]
    failed = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - failed} of {len(checks)} checks passed.", ""]
    return "\n".join(lines)
