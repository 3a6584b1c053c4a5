"""End-to-end fidelity: a byte-level LLaMA-style model decoding through SinkRouter.

Trains a small model on text found on this machine (or loads saved weights), then scores
held-out documents token by token with every layer's attention computed by sr_decode_step:
the model's own attention (reference), SinkRouter dense, budget routing and tau routing. Prints
one table (bits per byte, change vs dense, V blocks skipped, largest certified bound, heads
recomputed exactly, decode time per step) and writes it to --report. Exits 1 if a check fails.

GPU (PyTorch, CUDA backend):
    SINKROUTER_LIBRARY=build/cuda/lib/libsinkrouter.so PYTHONPATH=bindings/python \\
        python3 samples/python/e2e/e2e.py --backend cuda --report bench/E2E.md --save-weights w.npz
CPU (NumPy is enough; untrained weights when no trained weights file is present):
    SINKROUTER_LIBRARY=build/default/lib/libsinkrouter.so PYTHONPATH=bindings/python \\
        /usr/bin/python3 samples/python/e2e/e2e.py --backend cpu --numpy
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import contextlib
import math
import pathlib
import platform
import sys
import time

import numpy as np

import sinkrouter as sr
from byte_model import TINY, ModelConfig, NumpyByteModel, load_weights, parameter_count, random_weights, \
    save_weights, stored_weights
from checks import Check, agreement_check, fidelity_checks
from report_table import markdown_report, mode_table
from prefix_merge import variant_runs
from scoring import Mode, ModeResult, default_modes, score
from text_corpus import build_corpus, default_roots

try:
    import torch
except ImportError:  # CI has no PyTorch: the NumPy model runs there
    torch = None

HERE = pathlib.Path(__file__).resolve().parent
COMMITTED_WEIGHTS = HERE / "weights" / "byte_lm.npz"


@dataclasses.dataclass
class Evaluation:
    results: list[ModeResult]
    checks: list[Check]
    report: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def result(self, label: str) -> ModeResult:
        return next(r for r in self.results if r.mode.label == label)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["auto", "cuda", "cpu"], default="auto",
                   help="SinkRouter backend; auto: cuda when PyTorch sees a GPU, else cpu")
    p.add_argument("--numpy", action="store_true", help="run the NumPy model (always so without PyTorch)")
    p.add_argument("--weights", type=pathlib.Path, help="load these weights instead of training")
    p.add_argument("--train", action="store_true", help="train even on the CPU backend (needs PyTorch)")
    p.add_argument("--untrained", action="store_true",
                   help="score the small untrained stand-in model (deterministic random weights)")
    p.add_argument("--train-seconds", type=float, default=150.0, help="training budget (wall clock)")
    p.add_argument("--train-batch", type=int, default=16, help="windows per training step")
    p.add_argument("--train-bytes", type=float, default=96e6, help="most bytes of training text to read")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    p.add_argument("--save-weights", type=pathlib.Path, action="append", default=[],
                   help="write the trained weights here (repeatable)")
    p.add_argument("--docs", type=int, help="held-out documents scored as one batch (default 8 cuda, 2 cpu)")
    p.add_argument("--doc-tokens", type=int, help="tokens per document, BOS included (default 4096 cuda, 768 cpu)")
    p.add_argument("--text-root", action="append", default=[], help="where to look for text (repeatable)")
    p.add_argument("--budgets", default="1e-4,1e-3,1e-2", help="error budgets of the budget-mode runs")
    p.add_argument("--tau", type=float, default=10.0, help="logit gap of the tau-mode run (no error cap)")
    p.add_argument("--fp8-budgets", default="1e-2",
                   help="error budgets of the FP8-cache runs beside its dense run ('none': no FP8 runs)")
    p.add_argument("--replay-repeats", type=int, default=50, help="timed steps at full context per mode")
    p.add_argument("--threads", type=int, help="CPU backend worker threads (default: all cores)")
    p.add_argument("--report", type=pathlib.Path, help="write the Markdown report here (e.g. bench/E2E.md)")
    p.add_argument("--deadline", type=float, default=0.0,
                   help="seconds from the start after which no further routed mode is begun (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU backend: also run a shared prompt stored once and merged, and a sliding window")
    args = p.parse_args(argv)
    args.command = " ".join(sys.argv[1:] if argv is None else argv)
    return args


def resolve_backend(args) -> str:
    if args.backend == "cuda" and (torch is None or args.numpy):
        raise SystemExit("the cuda backend needs PyTorch (and no --numpy)")
    if args.backend != "auto":
        return args.backend
    return "cuda" if torch is not None and torch.cuda.is_available() and not args.numpy else "cpu"


def will_train(args, backend: str) -> bool:
    return (args.weights is None and not args.untrained and torch is not None and not args.numpy
            and (backend == "cuda" or args.train))


def choose_weights(args, backend: str, training_text: np.ndarray, log):
    """(config, float32 weights, facts about them): the untrained stand-in, a weights file, or a
    model trained now."""
    if args.untrained or (args.weights is None and not will_train(args, backend) and not COMMITTED_WEIGHTS.exists()):
        return TINY, random_weights(TINY, seed=args.seed), [
            ("weights", "untrained weights (deterministic random, attention logits spread on purpose): "
                        "this run tests the loop, not a model"), ("training", "none")]
    if not will_train(args, backend):
        path = args.weights or COMMITTED_WEIGHTS
        cfg, weights, meta = load_weights(path)
        return cfg, weights, [("weights", f"loaded from {path} ({path.stat().st_size / 1e6:.2f} MB)"),
                              ("training", meta.get("training", "unknown"))]

    from byte_model_torch import TorchByteModel
    from train_torch import train

    cfg = ModelConfig()
    torch.manual_seed(args.seed)
    model = TorchByteModel(cfg).to("cuda" if backend == "cuda" else "cpu")
    log(f"training {parameter_count(cfg) / 1e6:.2f}M parameters for {args.train_seconds:g} s "
        f"on {training_text.size / 1e6:.1f} MB of text")
    run = train(model, training_text, args.train_seconds, args.train_batch, args.lr, args.seed, args.compile, log)
    training = (f"{run.seconds:.0f} s, {run.steps} steps, {run.tokens / 1e6:.0f}M tokens "
                f"(batch {args.train_batch} x {cfg.context}), peak lr {args.lr:g}; last training batches "
                f"{run.final_loss_bits:.3f} bits/byte")
    weights = stored_weights(model.weights())  # scored as the file holds them (int8 rows)
    meta = {"training": training, "date": _now()}
    for path in args.save_weights:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(path, cfg, weights, meta)
        log(f"weights written to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return cfg, weights, [("weights", "trained in this run, stored as int8 rows and scored as stored"),
                          ("training", training)]


def build_model(args, backend: str, cfg: ModelConfig, weights: dict):
    """The PyTorch model when PyTorch is there (and --numpy is not given), else the NumPy one."""
    if torch is None or args.numpy:
        return NumpyByteModel(cfg, weights)
    from byte_model_torch import TorchByteModel

    model = TorchByteModel(cfg).to("cuda" if backend == "cuda" else "cpu")
    model.load_weights(weights)
    return model.eval()


def cross_checks(model, weights, docs, reference: ModeResult, log) -> list[Check]:
    """With PyTorch: the decode loop against the training forward (which keeps K/V in float32, not
    bf16), and the NumPy model against the PyTorch one on a short prefix of one document, both in
    float32, so that CI's NumPy model is the model trained here."""
    if isinstance(model, NumpyByteModel):
        return []
    parallel = float(np.mean(model.parallel_nll(docs))) / math.log(2)
    checks = [agreement_check("decode loop (reference attention) = training forward over whole documents",
                              reference.bits_per_byte, parallel, 1e-2)]
    prefix = docs[:1, :min(512, docs.shape[1])]
    reference_mode = Mode("reference", reference=True)
    numpy_run = score(NumpyByteModel(model.cfg, weights), prefix, reference_mode, None)
    torch_run = score(model, prefix, reference_mode, None)
    checks.append(agreement_check(f"NumPy model = PyTorch model (reference attention, {prefix.shape[1]} tokens)",
                                  numpy_run.bits_per_byte, torch_run.bits_per_byte, 1e-3))
    for c in checks:
        log(f"  {c.name}: {c.detail}")
    return checks


def evaluate(args, log=print) -> Evaluation:
    backend = resolve_backend(args)
    started = time.perf_counter()
    docs_count = args.docs or (8 if backend == "cuda" else 2)
    doc_tokens = args.doc_tokens or (4096 if backend == "cuda" else 768)
    roots = args.text_root or default_roots()
    training_bytes = int(args.train_bytes) if will_train(args, backend) else 0
    corpus = build_corpus(roots, docs_count, doc_tokens, training_bytes)
    log(f"text: {corpus.describe()} (gathered in {time.perf_counter() - started:.1f} s)")

    cfg, weights, facts = choose_weights(args, backend, corpus.training, log)
    model = build_model(args, backend, cfg, weights)
    facts.insert(0, ("model", f"{parameter_count(cfg) / 1e6:.2f}M parameters: {cfg.describe()} "
                              f"({type(model).__name__} on {backend})"))
    if doc_tokens > cfg.context:
        raise SystemExit(f"--doc-tokens {doc_tokens} exceeds the model's context of {cfg.context}")
    budgets = [float(b) for b in args.budgets.split(",") if b]
    fp8_budgets = None if args.fp8_budgets == "none" else [float(b) for b in args.fp8_budgets.split(",") if b]
    modes = default_modes(budgets, args.tau, fp8_budgets)

    stream = None
    if backend == "cuda":
        model.synchronize()
        stream = torch.cuda.Stream()
        context = sr.Context(sr.Backend.CUDA, stream=stream.cuda_stream)
    else:
        context = sr.Context(sr.Backend.CPU, num_threads=args.threads)
    results = []
    with context:
        device = context.device_name
        if backend == "cuda":
            device = f"{torch.cuda.get_device_name()} ({device})"
        log(f"scoring on {device}, libsinkrouter {sr.library_version()}")
        skipped, last_duration = [], 0.0
        for mode in modes:
            if len(results) >= 2 and args.deadline and \
                    time.perf_counter() - started + last_duration > args.deadline:
                skipped.append(mode.label)  # reference and dense always run: the checks need them
                continue
            mode_start = time.perf_counter()
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                result = score(model, corpus.held_out, mode, context, args.replay_repeats)
            results.append(result)
            last_duration = time.perf_counter() - mode_start
            log(f"  {mode.label}: {result.bits_per_byte:.5f} bits/byte ({last_duration:.1f} s)")
        if skipped:
            log(f"  not run, past the {args.deadline:g} s deadline: {', '.join(skipped)}")
        variant_checks, variant_lines = [], []
        if backend == "cpu" and args.variants:  # the attention variants run on the CPU backend so far
            variant_checks, variant_lines = variant_runs(model, corpus.held_out, context, log)
    checks = fidelity_checks(results, cfg.num_layers, cfg.num_kv_heads, cfg.num_q_heads) + variant_checks
    checks += cross_checks(model, weights, corpus.held_out, results[0], log)

    docs, tokens = corpus.held_out.shape
    facts = [("date", _now()), ("device", device), ("libsinkrouter", f"{sr.library_version()}, {backend} backend"),
             *facts, ("held-out text", corpus.describe()),
             ("run", f"{time.perf_counter() - started:.0f} s in all; python {platform.python_version()}"
                     + (f", torch {torch.__version__}" if torch is not None and not args.numpy else "")
                     + f", numpy {np.__version__}; arguments: {args.command or '(none)'}")]
    notes = [
        f"A step is one token of each of the {docs} documents through all {cfg.num_layers} layers "
        f"({docs * cfg.num_layers} decode attentions, as {cfg.num_layers} sr_decode_step calls of batch {docs}); "
        f"{tokens - 1} steps per mode. Bits per byte average every predicted byte. The KV cache is bf16 "
        "(16-token pages), FP8 E4M3 in the fp8 rows (one scale per token and kv-head, computed by the library); "
        "the reference is the model's own attention in float32 over its own bf16 KV cache.",
        "V blocks skipped, largest bound (the larger of the per-head head_error_bound arrays and the context "
        "statistics) and heads recomputed (q-heads whose bound passed the budget, redone exactly by the "
        "follow-up) come from sr_context_stats over the whole run.",
        "Decode time: *in loop* is the wall time of the sr_decode_step calls alone, the device synchronised "
        "before and after each (launch and host overhead included); *replay* is all layers' steps at the full "
        f"context ({tokens} tokens) repeated {args.replay_repeats} times: "
        + ("; ".join(dict.fromkeys(r.replay_how for r in results if r.replay_how)) or "not run") + ".",
    ]
    if skipped:
        notes.append(f"Not run, past the {args.deadline:g} s deadline: {', '.join(skipped)}.")
    if variant_lines:
        notes.append("Attention variants (CPU backend, samples/python/e2e/prefix_merge.py): "
                     + "; ".join(variant_lines) + ".")
    title = "End-to-end fidelity: a byte-level model decoding through SinkRouter"
    report = markdown_report(title, facts, results, checks, notes)
    log("")
    log(mode_table(results))
    for c in checks:
        if not c.passed:
            log(f"FAILED: {c.name}: {c.detail}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report)
        log(f"report written to {args.report}")
    return Evaluation(results, checks, report)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main(argv=None) -> int:
    args = parse_args(argv)
    evaluation = evaluate(args, log=lambda line: print(line, flush=True))
    print("all checks passed" if evaluation.passed else "SOME CHECKS FAILED")
    return 0 if evaluation.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
