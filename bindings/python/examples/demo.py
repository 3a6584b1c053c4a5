"""SinkRouter from Python: dense vs routed decode on a sink-structured context.

Builds one long sequence whose heads sit at an attention sink (as trained models' do), runs a
dense decode step and routed ones, and prints for each the share of V blocks skipped, the
certified error bound and the true error against float64 attention. Exits 1 if any true error
exceeds its bound or a budget is exceeded.

    SINKROUTER_LIBRARY=build/default/src/libsinkrouter.so PYTHONPATH=bindings/python \\
        python3 bindings/python/examples/demo.py --length 32768
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import sinkrouter as sr
from sinkrouter.testing import attention_reference, relative_error, sink_structured_context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=16384, help="tokens in the context")
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--group", type=int, default=4, help="q-heads per kv-head")
    parser.add_argument("--head-dim", type=int, default=128)
    args = parser.parse_args()

    k, v, q = sink_structured_context(args.length, args.kv_heads, args.group, args.head_dim, seed=7)
    with sr.Context(sr.Backend.CPU) as context, \
            sr.KvCache(context, num_layers=1, num_kv_heads=args.kv_heads, head_dim=args.head_dim,
                       capacity_tokens=args.length, dtype=sr.DType.BF16) as cache:
        print(f"libsinkrouter {sr.library_version()} on {context.device_name}")
        print(f"{args.length} tokens, {args.kv_heads} kv-heads x {args.group} q-heads, "
              f"head_dim {args.head_dim}, bf16 cache")
        seq = cache.add_sequence()
        cache.append(seq, 0, k, v)
        expected = attention_reference(*cache.read(seq, 0, dtype=sr.DType.F32), q[0])

        print(f"{'routing':<22}{'V skipped':>10}{'max bound':>12}{'max error':>12}{'ms':>8}")
        ok = True
        for label, routing in [
            ("dense", None),
            ("tau 12", sr.Routing(sr.RoutingMode.TAU, tau=12.0, error_budget=0.0)),
            ("tau 8", sr.Routing(sr.RoutingMode.TAU, tau=8.0, error_budget=0.0)),
            ("budget 1e-3", sr.Routing(sr.RoutingMode.BUDGET, error_budget=1e-3)),
            ("budget 1e-2", sr.Routing(sr.RoutingMode.BUDGET, error_budget=1e-2)),
        ]:
            bound = np.zeros(q.shape[:2], dtype=np.float32)
            context.reset_stats()
            start = time.perf_counter()
            out = cache.decode(seq, 0, q, routing=routing, head_error_bound=bound, collect_stats=True)
            elapsed_ms = 1e3 * (time.perf_counter() - start)
            error = relative_error(out[0], expected, axis=-1)
            stats = context.stats()
            print(f"{label:<22}{stats.v_skip_fraction:>10.1%}{bound.max():>12.2e}{error.max():>12.2e}"
                  f"{elapsed_ms:>8.2f}")
            # Dense and routed outputs differ from float64 by f32 rounding too (~1e-6).
            ok &= bool(np.all(error <= bound[0] + 1e-5))
            if routing is not None and routing.mode == sr.RoutingMode.BUDGET:
                ok &= bool(np.all(bound <= routing.error_budget))
    print("every true error is within its certified bound" if ok else "FAILED: an error exceeds its bound")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
