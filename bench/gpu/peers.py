"""The peers on the same shapes as sr_gpu_bench: PyTorch SDPA with its cuDNN and flash
backends (bf16, the GQA group's 4 q-heads as 4 query rows per kv-head, so K/V are read once),
per call and pipelined (a CUDA graph of steps rotating over enough K/V copies to defeat the
L2), and the device copy ceiling. Writes one JSON object per line to stdout.
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KV_HEADS, GROUP, DIM = 8, 4, 128
L2_DEFEAT_BYTES = 200e6
SHAPES = [(1, 4096), (64, 4096), (32, 8192), (1, 32768), (8, 32768), (1, 131072), (1, 524288)]
BACKENDS = {"sdpa_cudnn": SDPBackend.CUDNN_ATTENTION, "sdpa_flash": SDPBackend.FLASH_ATTENTION}


def copy_ceiling():
    """Device-to-device copy, counting bytes read plus bytes written (GB/s)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() / statistics.median(times) / 1e9


def time_backend(backend, batch, length):
    kv_bytes = 2 * batch * length * KV_HEADS * DIM * 2
    rotation = int(min(16, max(1, math.ceil(L2_DEFEAT_BYTES / kv_bytes))))
    q = torch.randn(batch, KV_HEADS, GROUP, DIM, device="cuda", dtype=torch.bfloat16)
    ks = [torch.randn(batch, KV_HEADS, length, DIM, device="cuda", dtype=torch.bfloat16) for _ in range(rotation)]
    vs = [torch.randn_like(k) for k in ks]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with sdpa_kernel([backend]):
        out = F.scaled_dot_product_attention(q, ks[0], vs[0])
        torch.cuda.synchronize()
        per_call, host = [], []
        for i in range(40):
            start.record()
            host_start = time.perf_counter()
            out = F.scaled_dot_product_attention(q, ks[i % rotation], vs[i % rotation])
            host_us = (time.perf_counter() - host_start) * 1e6
            end.record()
            end.synchronize()
            if i >= 5:
                per_call.append(start.elapsed_time(end) * 1e3)
                host.append(host_us)
        steps = max(rotation, 16) // rotation * rotation
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            for i in range(steps):  # warm-up on the capture stream
                F.scaled_dot_product_attention(q, ks[i % rotation], vs[i % rotation])
            torch.cuda.synchronize()
            with torch.cuda.graph(graph, stream=stream):
                for i in range(steps):
                    out = F.scaled_dot_product_attention(q, ks[i % rotation], vs[i % rotation])
        graph.replay()
        torch.cuda.synchronize()
        reps = max(3, int(2e8 / (kv_bytes * steps)))
        pipelined = []
        for _ in range(5):
            start.record()
            for _ in range(reps):
                graph.replay()
            end.record()
            end.synchronize()
            pipelined.append(start.elapsed_time(end) * 1e3 / (reps * steps))
    del ks, vs, graph
    torch.cuda.empty_cache()
    return statistics.median(per_call), statistics.median(pipelined), statistics.median(host)


def main():
    shapes = SHAPES
    if "--quick" in sys.argv:
        shapes = [(1, 4096), (8, 32768), (1, 131072)]
    if "--shapes" in sys.argv:  # e.g. --shapes 1x524288,1x131072
        listed = sys.argv[sys.argv.index("--shapes") + 1]
        shapes = [tuple(int(x) for x in item.split("x")) for item in listed.split(",")]
    print(json.dumps({"kind": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "copy_gbps": copy_ceiling()}), flush=True)
    for batch, length in shapes:
        for name, backend in BACKENDS.items():
            row = {"kind": "peer", "method": name, "batch": batch, "length": length}
            try:
                row["per_call_us"], row["pipelined_us"], row["host_us"] = time_backend(backend, batch, length)
            except Exception as error:  # a backend that cannot run this shape says so in the table
                row["error"] = str(error).splitlines()[0][:200]
                torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
