"""The byte model of byte_model.py in PyTorch: the training forward over whole windows, and the
same decode step as the NumPy model (attention supplied by the caller) for scoring.

Training runs the matrix products in bf16 (autocast on CUDA). Scoring runs in float32 throughout,
so that the runs it compares differ only in attention; their KV caches hold bf16.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byte_model import VOCAB, ModelConfig, rope_tables


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of the last axis (float32)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, q, kv = cfg.d_model, cfg.num_q_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.attn_norm = nn.Parameter(torch.ones(d))
        self.wq = nn.Linear(d, q, bias=False)
        self.wk = nn.Linear(d, kv, bias=False)
        self.wv = nn.Linear(d, kv, bias=False)
        self.wo = nn.Linear(q, d, bias=False)
        self.mlp_norm = nn.Parameter(torch.ones(d))
        self.w_gate = nn.Linear(d, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(d, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, d, bias=False)

    def mlp(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        n = rms_norm(x, self.mlp_norm, eps)
        return self.w_down(F.silu(self.w_gate(n)) * self.w_up(n)).float()


class TorchByteModel(nn.Module):
    """State-dict keys are byte_model's weight names, with ".weight" after Linear/Embedding ones."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.Parameter(torch.ones(cfg.d_model))
        self.head = nn.Linear(cfg.d_model, VOCAB, bias=False)
        cos, sin = rope_tables(cfg, cfg.context)
        self.register_buffer("rope_cos", torch.from_numpy(cos), persistent=False)
        self.register_buffer("rope_sin", torch.from_numpy(sin), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        out_std = 0.02 / (2 * self.cfg.num_layers) ** 0.5  # residual outputs start small
        for name, p in self.named_parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=out_std if name.endswith(("wo.weight", "w_down.weight")) else 0.02)

    # ------------------------------------------------------------------ weights

    def weights(self) -> dict[str, np.ndarray]:
        """float32 weights under byte_model's names."""
        return {key.removesuffix(".weight"): value.detach().float().cpu().numpy()
                for key, value in self.state_dict().items()}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        keys = set(self.state_dict())
        state = {(name + ".weight" if name + ".weight" in keys else name): torch.from_numpy(np.asarray(w))
                 for name, w in weights.items()}
        self.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------ training forward

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch][T][256] (float32) of every next byte, causal attention over the window."""
        cfg = self.cfg
        batch, length = tokens.shape
        x = self.embed(tokens).float()
        cos, sin = self.rope_cos[:length], self.rope_sin[:length]
        for layer in self.layers:
            n = rms_norm(x, layer.attn_norm, cfg.norm_eps)
            q = layer.wq(n).float().view(batch, length, cfg.num_q_heads, cfg.head_dim).transpose(1, 2)
            k = layer.wk(n).float().view(batch, length, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
            v = layer.wv(n).view(batch, length, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
            q, k = apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype)
            # q-head h reads kv-head h // group, as in SinkRouter.
            k, v = k.repeat_interleave(cfg.group, dim=1), v.repeat_interleave(cfg.group, dim=1)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + layer.wo(att.transpose(1, 2).reshape(batch, length, -1)).float()
            x = x + layer.mlp(x, cfg.norm_eps)
        return self.head(rms_norm(x, self.final_norm, cfg.norm_eps)).float()

    # ------------------------------------------------------------------ decode (scoring)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def device_tensors(self) -> bool:
        return self.device.type == "cuda"

    def training_autocast(self):
        """bf16 matrix products on CUDA; nothing on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, docs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(docs, np.int64)).to(self.device)

    @torch.no_grad()
    def nll_step(self, tokens: torch.Tensor, pos: int, attend) -> torch.Tensor:
        """NumpyByteModel.nll_step in torch: attend(layer, q, k, v) gets float32 tensors (q
        [batch][q_heads][head_dim], k and v [batch][kv_heads][head_dim], RoPE applied) and returns
        the output shaped like q (a tensor, or a NumPy array on the CPU)."""
        cfg = self.cfg
        batch = tokens.shape[0]
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]
        x = self.embed(tokens[:, pos])
        for i, layer in enumerate(self.layers):
            n = rms_norm(x, layer.attn_norm, cfg.norm_eps)
            q = apply_rope(layer.wq(n).view(batch, cfg.num_q_heads, cfg.head_dim), cos, sin)
            k = apply_rope(layer.wk(n).view(batch, cfg.num_kv_heads, cfg.head_dim), cos, sin)
            v = layer.wv(n).view(batch, cfg.num_kv_heads, cfg.head_dim)
            out = torch.as_tensor(attend(i, q, k, v), device=self.device)
            x = x + layer.wo(out.reshape(batch, -1))
            x = x + layer.mlp(x, cfg.norm_eps)
        logp = torch.log_softmax(self.head(rms_norm(x, self.final_norm, cfg.norm_eps)), dim=-1)
        return -logp.gather(1, tokens[:, pos + 1:pos + 2]).squeeze(1)

    def gather(self, steps: list) -> np.ndarray:
        return torch.stack(steps, dim=1).double().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reference_attention(self, batch: int, max_tokens: int) -> "TorchReferenceAttention":
        return TorchReferenceAttention(self.cfg, batch, max_tokens, self.device)

    @torch.no_grad()
    def parallel_nll(self, docs: np.ndarray) -> np.ndarray:
        """[batch][T - 1] nats from the training forward (all positions at once), one document at
        a time: checks that the decode loop computes the model that was trained."""
        rows = []
        for doc in docs:
            tokens = self.prepare(doc[None])
            logits = self.forward(tokens[:, :-1])
            rows.append(F.cross_entropy(logits[0], tokens[0, 1:], reduction="none").double().cpu().numpy())
        return np.stack(rows)


class TorchReferenceAttention:
    """The model's own attention for decoding: its own bf16 KV cache and PyTorch's
    scaled_dot_product_attention in float32 over it."""

    def __init__(self, cfg: ModelConfig, batch: int, max_tokens: int, device: torch.device):
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_tokens, cfg.head_dim)
        self.cfg = cfg
        self.k = torch.zeros(shape, dtype=torch.bfloat16, device=device)
        self.v = torch.zeros(shape, dtype=torch.bfloat16, device=device)
        self.length = [0] * cfg.num_layers

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        t = self.length[layer]
        self.k[layer, :, :, t] = k.to(torch.bfloat16)
        self.v[layer, :, :, t] = v.to(torch.bfloat16)
        self.length[layer] = t + 1
        keys, values = self.k[layer, :, :, :t + 1].float(), self.v[layer, :, :, :t + 1].float()
        # A group's q-heads are queries of one kv-head: [batch][kv_heads][group][head_dim].
        grouped = q.reshape(q.shape[0], cfg.num_kv_heads, cfg.group, cfg.head_dim)
        return F.scaled_dot_product_attention(grouped, keys, values).reshape(q.shape)
