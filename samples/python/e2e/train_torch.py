"""Trains the byte model for a fixed wall-clock budget (PyTorch, bf16 autocast on CUDA).

Windows are BOS + context - 1 bytes taken at random offsets of the training text; the learning
rate warms up over the first 3% of the budget and follows a cosine to a tenth of its peak, both
by elapsed time, so the schedule ends when the budget does.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from byte_model import BOS
from byte_model_torch import TorchByteModel


@dataclasses.dataclass(frozen=True)
class TrainResult:
    seconds: float
    steps: int
    tokens: int
    final_loss_bits: float  # bits per byte of the last logged batches (training text)


def learning_rate(peak: float, fraction: float) -> float:
    if fraction < 0.03:
        return peak * max(fraction, 1e-3) / 0.03
    progress = min((fraction - 0.03) / 0.97, 1.0)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(model: TorchByteModel, text: np.ndarray, seconds: float, batch: int, peak_lr: float, seed: int,
          compile_model: bool = False, log=print) -> TrainResult:
    cfg, device = model.cfg, model.device
    if text.size <= cfg.context:
        raise ValueError(f"training text has {text.size} bytes, fewer than one window of {cfg.context}")
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=peak_lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    forward = torch.compile(model) if compile_model else model
    generator = np.random.default_rng(seed)
    text_on_device = torch.from_numpy(text).to(device)
    span = torch.arange(cfg.context, device=device)
    bos = torch.full((batch, 1), BOS, dtype=torch.long, device=device)

    model.train()
    start = time.perf_counter()
    step, recent = 0, []
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(peak_lr, elapsed / seconds)
        offsets = torch.from_numpy(generator.integers(0, text.size - cfg.context, size=batch)).to(device)
        window = text_on_device[offsets[:, None] + span].long()  # [batch][context] bytes
        inputs = torch.cat([bos, window[:, :-1]], dim=1)          # BOS + context - 1 bytes
        with model.training_autocast():
            logits = forward(inputs)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), window.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 10 == 0:  # reading the loss waits for the GPU, which keeps the clock honest
            recent = (recent + [loss.item() / math.log(2)])[-10:]
            if step % 200 == 0:
                rate = step * batch * cfg.context / (time.perf_counter() - start)
                log(f"  step {step}: {recent[-1]:.3f} bits/byte, {rate / 1e6:.2f} M tokens/s, "
                    f"lr {optimizer.param_groups[0]['lr']:.2e}")
    model.synchronize()
    model.eval()
    elapsed = time.perf_counter() - start
    final = float(np.mean(recent)) if recent else float("nan")
    return TrainResult(elapsed, step, step * batch * cfg.context, final)
