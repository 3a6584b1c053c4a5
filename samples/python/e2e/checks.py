"""What a run must show: SinkRouter dense equals the model's own attention, budgets hold at every
step for every head, and the context statistics add up to the work the loop asked for."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from scoring import ModeResult, expected_blocks

DENSE_TOLERANCE = 1e-3  # relative bits-per-byte difference, dense SinkRouter vs the model's own attention
FP8_TOLERANCE = 1e-2    # relative bits-per-byte change of an FP8 cache against bf16, both dense


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def fidelity_checks(results: list[ModeResult], num_layers: int, num_kv_heads: int, num_q_heads: int) -> list[Check]:
    by_label = {r.mode.label: r for r in results}
    reference, dense = by_label["reference"], by_label["dense"]
    difference = relative_difference(dense.bits_per_byte, reference.bits_per_byte)
    checks = [Check("dense SinkRouter = the model's own attention", difference <= DENSE_TOLERANCE,
                    f"{dense.bits_per_byte:.6f} vs {reference.bits_per_byte:.6f} bits/byte: relative difference "
                    f"{difference:.2e} (limit {DENSE_TOLERANCE:g}); largest difference of one byte's bits "
                    f"{largest_byte_difference(dense, reference):.2e}")]
    if "fp8 dense" in by_label:
        fp8 = by_label["fp8 dense"]
        change = relative_difference(fp8.bits_per_byte, dense.bits_per_byte)
        checks.append(Check("FP8 cache, dense: bits per byte within 1% of the bf16 cache's", change <= FP8_TOLERANCE,
                            f"{fp8.bits_per_byte:.6f} vs {dense.bits_per_byte:.6f} bits/byte: relative change "
                            f"{change:.2e} (limit {FP8_TOLERANCE:g}); largest change of one byte's bits "
                            f"{largest_byte_difference(fp8, dense):.2e}"))
    for r in results:
        if r.mode.reference:
            continue
        checks.extend(_stats_checks(r, num_layers, num_kv_heads, num_q_heads))
        budget = r.mode.budget
        if budget is not None:
            limit = float(np.float32(budget))  # the library compares in float32
            ok = r.heads_over_budget == 0 and r.max_head_bound <= limit and r.stats.max_error_bound <= limit
            checks.append(Check(f"{r.mode.label}: every head's certified bound within the budget at every step", ok,
                                f"{r.heads_over_budget} head-steps over; largest bound {r.max_head_bound:.3e} "
                                f"(per-head arrays), {r.stats.max_error_bound:.3e} (stats)"))
    return checks


def _stats_checks(r: ModeResult, num_layers: int, num_kv_heads: int, num_q_heads: int) -> list[Check]:
    s, label = r.stats, r.mode.label
    batch, steps = r.nll_bits.shape
    calls = steps * num_layers
    blocks = expected_blocks(batch, num_kv_heads, num_layers, steps)
    problems = []
    if not (s.steps == r.decode_calls == calls):
        problems.append(f"steps {s.steps}, decode calls {r.decode_calls}, expected {calls}")
    if s.heads != calls * batch * num_q_heads:
        problems.append(f"heads {s.heads}, expected {calls * batch * num_q_heads}")
    if s.blocks_total != blocks:
        problems.append(f"blocks_total {s.blocks_total}, expected {blocks}")
    if not 0 <= s.blocks_v_skipped <= s.blocks_total:
        problems.append(f"blocks_v_skipped {s.blocks_v_skipped} outside [0, {s.blocks_total}]")
    if not 0 <= s.heads_recomputed <= s.heads:
        problems.append(f"heads_recomputed {s.heads_recomputed} outside [0, {s.heads}]")
    bounds = (s.max_error_bound, s.max_skipped_mass, r.max_head_bound)
    if not all(math.isfinite(x) and x >= 0 for x in bounds):
        problems.append(f"bounds {bounds} not finite and non-negative")
    if r.mode.routing is None and (s.blocks_v_skipped or s.heads_recomputed or s.max_error_bound or r.max_head_bound):
        problems.append("dense run skipped, recomputed or reported a bound")
    if not math.isfinite(r.bits_per_byte):
        problems.append(f"bits per byte {r.bits_per_byte}")
    return [Check(f"{label}: statistics add up", not problems,
                  "; ".join(problems) or f"{s.steps} steps, {s.blocks_total} blocks, {s.blocks_v_skipped} V skipped")]


def largest_byte_difference(a: ModeResult, b: ModeResult) -> float:
    """Largest difference of one predicted byte's bits between two runs over the same text."""
    return float(np.max(np.abs(a.nll_bits - b.nll_bits)))


def agreement_check(name: str, value: float, expected: float, tolerance: float) -> Check:
    difference = relative_difference(value, expected)
    return Check(name, difference <= tolerance,
                 f"{value:.5f} vs {expected:.5f} bits/byte: relative difference {difference:.2e} (limit {tolerance:g})")
