"""A shared prompt prefix stored once, merged with each request's own tokens (CPU backend).

Every document of the batch starts with the same prompt (the first `prefix_tokens` tokens). The
cache holds the prompt once, in one sequence, and each document's later tokens in a sequence of
its own. A layer's attention is then two decode steps, each with its log-sum-exp: every batch
entry's query over the prompt sequence, and over its own suffix; sr_merge_attention_states
merges them into attention over the whole context, and merges their certified bounds too. The
bits per byte must equal those of the plain loop, where each document holds its whole context,
up to float32 rounding. A learned sink logit would go into one of the two steps only; this
byte model has none.

The sliding-window mode runs the plain loop with window_left (and the first tokens kept, as
StreamingLLM does): what a window costs this model in bits per byte.
"""
from __future__ import annotations

import math

import numpy as np

import sinkrouter as sr
from scoring import ModeResult, Mode


class PrefixMergeAttention:
    """HostAttention's interface (called per layer, in position order), with the prompt stored once."""

    def __init__(self, context: sr.Context, cache: sr.KvCache, batch: int, prefix_tokens: int, mode: Mode,
                 num_q_heads: int):
        self.context, self.cache, self.mode = context, cache, mode
        self.prefix_tokens = prefix_tokens
        self.prompt = cache.add_sequence()
        self.suffixes = [cache.add_sequence() for _ in range(batch)]
        self.rows = (batch, num_q_heads)
        self.position: dict[int, int] = {}
        self.max_bound, self.over_budget, self.merges = 0.0, 0, 0

    def __call__(self, layer: int, q, k, v) -> np.ndarray:
        position = self.position.get(layer, 0)
        self.position[layer] = position + 1
        q = np.ascontiguousarray(q, np.float32)
        k, v = np.asarray(k, np.float32), np.asarray(v, np.float32)
        batch = len(self.suffixes)
        routing = self.mode.routing
        if position < self.prefix_tokens:
            # The prompt: the same token in every document, so its K/V are stored once.
            if not (np.array_equal(k, np.broadcast_to(k[:1], k.shape)) and
                    np.array_equal(v, np.broadcast_to(v[:1], v.shape))):
                raise ValueError(f"position {position} of the prompt differs between documents")
            self.cache.append(self.prompt, layer, k[:1], v[:1])
            return self.cache.decode([self.prompt] * batch, layer, q, routing=routing)
        for b, seq in enumerate(self.suffixes):
            self.cache.append(seq, layer, k[b:b + 1], v[b:b + 1])
        states = []
        for seqs in ([self.prompt] * batch, self.suffixes):
            lse = np.empty(self.rows, np.float32)
            bound = np.empty(self.rows, np.float32)
            out = self.cache.decode(seqs, layer, q, routing=routing, lse=lse, head_error_bound=bound)
            states.append((out, lse, bound))
        merged = self.context.merge_attention_states(states)
        self.merges += 1
        self.max_bound = max(self.max_bound, float(merged.bound.max()))
        return merged.out


def score_prefix_merge(model, docs: np.ndarray, prefix_tokens: int, mode: Mode, context: sr.Context) -> tuple[
        ModeResult, PrefixMergeAttention]:
    """Scores docs [documents][tokens] whose first prefix_tokens tokens are one shared prompt."""
    cfg = model.cfg
    batch, tokens_per_doc = docs.shape
    if not np.array_equal(docs[:, :prefix_tokens], np.broadcast_to(docs[:1, :prefix_tokens], (batch, prefix_tokens))):
        raise ValueError("the documents do not share their first prefix_tokens tokens")
    tokens = model.prepare(docs)
    page = 16
    capacity = (math.ceil(prefix_tokens / page) + batch * math.ceil(tokens_per_doc / page) + batch) * page
    with sr.KvCache(context, num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                    page_tokens=page, capacity_tokens=capacity, dtype=mode.cache_dtype, max_batch=batch,
                    max_q_heads=cfg.num_q_heads) as cache:
        attend = PrefixMergeAttention(context, cache, batch, prefix_tokens, mode, cfg.num_q_heads)
        steps = [model.nll_step(tokens, pos, attend) for pos in range(tokens_per_doc - 1)]
        return ModeResult(mode, model.gather(steps) / math.log(2)), attend


def with_shared_prompt(docs: np.ndarray, prefix_tokens: int) -> np.ndarray:
    """docs with the first document's first prefix_tokens tokens copied into every document."""
    shared = docs.copy()
    shared[:, :prefix_tokens] = docs[0, :prefix_tokens]
    return shared


class WindowAttention:
    """The plain loop with a sliding window: each step attends to the last window_left + 1 tokens
    and the first window_sink_tokens."""

    def __init__(self, cache: sr.KvCache, seqs: list[int], window_left: int, window_sink_tokens: int):
        self.cache, self.seqs = cache, seqs
        self.window_left, self.window_sink_tokens = window_left, window_sink_tokens

    def __call__(self, layer: int, q, k, v) -> np.ndarray:
        q = np.ascontiguousarray(q, np.float32)
        k, v = np.asarray(k, np.float32), np.asarray(v, np.float32)
        for b, seq in enumerate(self.seqs):
            self.cache.append(seq, layer, k[b:b + 1], v[b:b + 1])
        return self.cache.decode(self.seqs, layer, q, window_left=self.window_left,
                                 window_sink_tokens=self.window_sink_tokens)


def score_window(model, docs: np.ndarray, window_left: int, window_sink_tokens: int, context: sr.Context) -> ModeResult:
    cfg = model.cfg
    batch, tokens_per_doc = docs.shape
    tokens = model.prepare(docs)
    page = 16
    with sr.KvCache(context, num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                    page_tokens=page, capacity_tokens=batch * math.ceil(tokens_per_doc / page) * page,
                    dtype=sr.DType.BF16, max_batch=batch, max_q_heads=cfg.num_q_heads) as cache:
        seqs = [cache.add_sequence() for _ in range(batch)]
        attend = WindowAttention(cache, seqs, window_left, window_sink_tokens)
        steps = [model.nll_step(tokens, pos, attend) for pos in range(tokens_per_doc - 1)]
        label = f"window {window_left + 1}" + (f" + {window_sink_tokens} first" if window_sink_tokens else "")
        return ModeResult(Mode(label), model.gather(steps) / math.log(2))


MERGE_TOLERANCE = 1e-4  # relative bits-per-byte difference, prompt stored once + merge vs the plain loop


def variant_runs(model, docs: np.ndarray, context: sr.Context, log) -> tuple[list, list[str]]:
    """The CPU backend's attention-variant runs: (checks, report lines). A prompt of a quarter of
    each document shared by all, stored once and merged, dense and at budget 1e-2, against the
    plain loop over the same documents; and a sliding window of a quarter of the document with
    the first 4 tokens kept, against full attention."""
    from checks import Check  # (checks imports scoring; imported here to keep this module light)
    from scoring import score

    batch, tokens = docs.shape
    prefix = tokens // 4
    shared = with_shared_prompt(docs, prefix)
    checks, lines = [], []
    plain = score(model, shared, Mode("dense"), context)
    for label, routing in (("dense", None),
                           ("budget 0.01", sr.Routing(sr.RoutingMode.BUDGET, error_budget=1e-2, route_from_tokens=0))):
        merged, attend = score_prefix_merge(model, shared, prefix, Mode(label, routing), context)
        difference = relative_difference(merged.bits_per_byte, plain.bits_per_byte)
        line = (f"prompt of {prefix} tokens stored once, merged ({label}): {merged.bits_per_byte:.6f} bits/byte "
                f"vs {plain.bits_per_byte:.6f} with every document holding it (relative difference {difference:.2e}; "
                f"{attend.merges} merges, largest merged bound {attend.max_bound:.2e})")
        log(f"  {line}")
        lines.append(line)
        if routing is None:
            checks.append(Check("prompt stored once + sr_merge_attention_states = the plain loop",
                                difference <= MERGE_TOLERANCE and attend.max_bound == 0.0,
                                f"{line} (limit {MERGE_TOLERANCE:g}, bound 0)"))
    full = score(model, docs, Mode("dense"), context)
    window = score_window(model, docs, prefix - 1, 4, context)
    change = relative_difference(window.bits_per_byte, full.bits_per_byte)
    line = (f"{window.mode.label} tokens: {window.bits_per_byte:.6f} bits/byte against {full.bits_per_byte:.6f} with "
            f"every token attended (relative change {change:+.2e})")
    log(f"  {line}")
    lines.append(line)
    checks.append(Check("sliding window runs and scores finite", math.isfinite(window.bits_per_byte), line))
    return checks, lines


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / abs(b)
