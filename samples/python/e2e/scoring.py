"""Scores held-out documents token by token with every layer's attention computed by SinkRouter.

One sr_kv_cache holds the batch's K/V for all layers. For each token and each layer l the model
computes q, k, v (RoPE applied), appends this token's k and v to layer l of each document's
sequence (sr_kv_append), and gets the attention output from sr_decode_step on layer l, which it
feeds on. The reference mode runs the same loop with the model's own attention instead.

Host and device differ only in how buffers reach the library: NumPy arrays on the CPU backend,
device pointers of torch tensors plus the current stream on CUDA. Only the sr_decode_step calls
are timed, synchronised before and after each call.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

import sinkrouter as sr


@dataclasses.dataclass(frozen=True)
class Mode:
    label: str
    routing: sr.Routing | None = None  # None: dense
    reference: bool = False            # the model's own attention instead of SinkRouter
    cache_dtype: sr.DType = sr.DType.BF16

    @property
    def budget(self) -> float | None:
        """The certified error bound every head must stay within (None: not enforced)."""
        r = self.routing
        return r.error_budget if r is not None and r.error_budget else None


def default_modes(budgets: list[float], tau: float, fp8_budgets: list[float] | None = None) -> list[Mode]:
    # Routed at every length (route_from_tokens=0): this sample measures what routing does to the
    # model, also at contexts where a GPU backend would otherwise run the step dense. With
    # fp8_budgets (a list, possibly empty), an FP8 E4M3 cache runs dense and at those budgets.
    def budget(b: float) -> sr.Routing:
        return sr.Routing(sr.RoutingMode.BUDGET, error_budget=b, route_from_tokens=0)

    modes = ([Mode("reference", reference=True), Mode("dense")]
             + [Mode(f"budget {b:g}", budget(b)) for b in budgets]
             + [Mode(f"tau {tau:g}", sr.Routing(sr.RoutingMode.TAU, tau=tau, error_budget=0.0, route_from_tokens=0))])
    if fp8_budgets is not None:
        fp8 = sr.DType.FP8_E4M3
        modes += [Mode("fp8 dense", cache_dtype=fp8)] + [Mode(f"fp8 budget {b:g}", budget(b), cache_dtype=fp8)
                                                          for b in fp8_budgets]
    return modes


@dataclasses.dataclass
class ModeResult:
    mode: Mode
    nll_bits: np.ndarray                  # [documents][predicted bytes]
    stats: sr.DecodeStats | None = None
    max_head_bound: float | None = None   # largest head_error_bound of any head at any step
    heads_over_budget: int = 0            # (step, document, q-head) bounds above the budget
    decode_calls: int = 0
    decode_seconds: float = 0.0           # the sr_decode_step calls of the whole run
    replay_seconds: float | None = None   # all layers' decode at full context, per step
    replay_how: str = ""

    @property
    def bits_per_byte(self) -> float:
        return float(self.nll_bits.mean())

    @property
    def steps(self) -> int:
        return self.nll_bits.shape[1]


class CallTimer:
    """Wall time of calls, with the device synchronised before and after each."""

    def __init__(self, synchronize):
        self.synchronize = synchronize
        self.seconds, self.calls = 0.0, 0

    def run(self, call):
        self.synchronize()
        start = time.perf_counter()
        value = call()
        self.synchronize()
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return value


class HostAttention:
    """SinkRouter attention on the CPU backend: NumPy (or CPU torch) buffers."""

    def __init__(self, cache: sr.KvCache, seqs: list[int], mode: Mode, num_q_heads: int, timer: CallTimer):
        self.cache, self.seqs, self.mode, self.timer = cache, seqs, mode, timer
        self.bound = np.zeros((len(seqs), num_q_heads), np.float32)
        self.max_bound, self.over_budget = 0.0, 0
        self.last_q: dict[int, np.ndarray] = {}

    def __call__(self, layer: int, q, k, v) -> np.ndarray:
        q = np.ascontiguousarray(q, np.float32)
        k, v = np.asarray(k, np.float32), np.asarray(v, np.float32)
        for b, seq in enumerate(self.seqs):
            self.cache.append(seq, layer, k[b:b + 1], v[b:b + 1])  # float32 in, stored as the cache's dtype
        out = self.timer.run(lambda: self.cache.decode(
            self.seqs, layer, q, routing=self.mode.routing, head_error_bound=self.bound, collect_stats=True))
        self.max_bound = max(self.max_bound, float(self.bound.max()))
        if self.mode.budget is not None:
            self.over_budget += int(np.count_nonzero(~(self.bound <= self.mode.budget)))
        self.last_q[layer] = q
        return out

    def summary(self) -> tuple[float, int]:
        return self.max_bound, self.over_budget

    def replay(self, repeats: int) -> tuple[float, str]:
        """Seconds per step of all layers' decode at the final context (host loop)."""
        out = np.empty_like(self.last_q[0])
        layers = sorted(self.last_q)
        start = time.perf_counter()
        for _ in range(repeats):
            for layer in layers:
                self.cache.decode(self.seqs, layer, self.last_q[layer], out, routing=self.mode.routing)
        return (time.perf_counter() - start) / repeats, "host loop"


class DeviceAttention:
    """SinkRouter attention on a GPU backend: device pointers of torch tensors, all work on the
    current torch stream (the one the context was created with), nothing copied to the host."""

    def __init__(self, cache: sr.KvCache, seqs: list[int], mode: Mode, num_q_heads: int, timer: CallTimer):
        import torch

        self.torch = torch
        self.cache, self.seqs, self.mode, self.timer = cache, seqs, mode, timer
        self.num_q_heads = num_q_heads
        device = torch.device("cuda", torch.cuda.current_device())
        self.bound = torch.zeros((len(seqs), num_q_heads), dtype=torch.float32, device=device)
        self.max_bound = torch.zeros((), dtype=torch.float32, device=device)
        self.over_budget = torch.zeros((), dtype=torch.int64, device=device)
        self.last_q: dict = {}

    def _stream(self) -> int:
        return self.torch.cuda.current_stream().cuda_stream

    def __call__(self, layer: int, q, k, v):
        torch = self.torch
        stream = self._stream()
        k16, v16 = k.to(torch.bfloat16).contiguous(), v.to(torch.bfloat16).contiguous()
        for b, seq in enumerate(self.seqs):
            self.cache.append_device(seq, layer, 1, k16[b].data_ptr(), v16[b].data_ptr(), dtype=sr.DType.BF16,
                                     stream=stream)
        q = q.float().contiguous()
        out = torch.empty_like(q)
        self.timer.run(lambda: self.cache.decode_device(
            self.seqs, layer, self.num_q_heads, q.data_ptr(), out.data_ptr(), q_dtype=sr.DType.F32,
            out_dtype=sr.DType.F32, stream=stream, routing=self.mode.routing,
            head_error_bound_ptr=self.bound.data_ptr(), collect_stats=True))
        torch.maximum(self.max_bound, self.bound.max(), out=self.max_bound)
        if self.mode.budget is not None:
            self.over_budget += (~(self.bound <= self.mode.budget)).sum()
        self.last_q[layer] = q
        return out

    def summary(self) -> tuple[float, int]:
        return float(self.max_bound.item()), int(self.over_budget.item())

    def replay(self, repeats: int) -> tuple[float, str]:
        """GPU seconds per step of all layers' decode at the final context: the steps captured
        once in a CUDA graph and replayed back to back (host launch cost excluded). Falls back to
        launching them back to back when capture fails."""
        torch = self.torch
        layers = sorted(self.last_q)
        out = torch.empty_like(self.last_q[layers[0]])
        bound = torch.empty_like(self.bound)

        def steps():
            stream = self._stream()
            for layer in layers:
                self.cache.decode_device(self.seqs, layer, self.num_q_heads, self.last_q[layer].data_ptr(),
                                         out.data_ptr(), stream=stream, routing=self.mode.routing,
                                         head_error_bound_ptr=bound.data_ptr())

        how = "CUDA graph replay"
        try:
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                steps()
            run = graph.replay
        except Exception as error:  # noqa: BLE001 - timing only: say why and time launches
            how = f"back-to-back launches (graph capture failed: {error})"
            run = steps
        run()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / repeats, how


def score(model, docs: np.ndarray, mode: Mode, context: sr.Context | None, replay_repeats: int = 0) -> ModeResult:
    """Run the model over docs [documents][tokens] (each starting with BOS) in one mode; then, for
    SinkRouter modes, time `replay_repeats` extra steps of all layers at the final context."""
    cfg = model.cfg
    batch, tokens_per_doc = docs.shape
    if tokens_per_doc > cfg.context:
        raise ValueError(f"documents of {tokens_per_doc} tokens exceed the model's context of {cfg.context}")
    tokens = model.prepare(docs)
    if mode.reference:
        attend = model.reference_attention(batch, tokens_per_doc)
        steps = [model.nll_step(tokens, pos, attend) for pos in range(tokens_per_doc - 1)]
        return ModeResult(mode, model.gather(steps) / math.log(2))

    page = 16
    timer = CallTimer(model.synchronize)
    with sr.KvCache(context, num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim,
                    page_tokens=page, capacity_tokens=batch * math.ceil(tokens_per_doc / page) * page,
                    dtype=mode.cache_dtype, max_batch=batch, max_q_heads=cfg.num_q_heads) as cache:
        seqs = [cache.add_sequence() for _ in range(batch)]
        engine = DeviceAttention if model.device_tensors else HostAttention
        attend = engine(cache, seqs, mode, cfg.num_q_heads, timer)
        context.reset_stats()
        steps = [model.nll_step(tokens, pos, attend) for pos in range(tokens_per_doc - 1)]
        result = ModeResult(mode, model.gather(steps) / math.log(2), stats=context.stats())
        result.max_head_bound, result.heads_over_budget = attend.summary()
        result.decode_calls, result.decode_seconds = timer.calls, timer.seconds
        if replay_repeats > 0:
            result.replay_seconds, result.replay_how = attend.replay(replay_repeats)
        model.synchronize()  # nothing may still use the cache when it closes
    return result


def expected_blocks(batch: int, kv_heads: int, layers: int, steps: int, page: int = 16) -> int:
    """Blocks a run scores: every step, every layer, every (document, kv-head) reads ceil(n/page)
    pages of its n tokens."""
    return batch * kv_heads * layers * sum(math.ceil(n / page) for n in range(1, steps + 1))
