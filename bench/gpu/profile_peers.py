"""One SDPA call of a peer backend on one benchmark shape, inside a profiler range, so that ncu
(--profile-from-start off) profiles just that call's kernels: how the peers lay out their grid
(blocks, threads, registers, shared memory) and how close to the DRAM roofline they run, next to
ours (bench/gpu/run_device.sh profile). Usage: profile_peers.py {sdpa_cudnn|sdpa_flash} BATCH LENGTH
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peers import BACKENDS, DIM, GROUP, KV_HEADS


def main():
    name, batch, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    q = torch.randn(batch, KV_HEADS, GROUP, DIM, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, KV_HEADS, length, DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    with sdpa_kernel([BACKENDS[name]]):
        for _ in range(3):  # warm-up: plans, autotuning, module loads
            F.scaled_dot_product_attention(q, k, v)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        F.scaled_dot_product_attention(q, k, v)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
