"""A LLaMA-style byte-level decoder: its configuration, its weights file, and its NumPy forward pass.

Architecture (byte_model_torch.py trains the same one): a byte embedding, then per layer
RMSNorm -> attention (GQA, RoPE on interleaved pairs, head_dim 128) -> residual and
RMSNorm -> SwiGLU -> residual, then a final RMSNorm and an untied output head over 256 bytes.
Every document and training window starts with the BOS byte.

Weights travel as one .npz: matrices as int8 with one float32 scale per output row (a trained
model of 3.7M parameters fits in 4 MB, small enough to commit), vectors as float32. The model a
run scores is always the one in the file: a run that trains replaces its weights by the stored
values before scoring, so GPU and CPU runs of one file score the same model.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

import sinkrouter as sr

BOS = 2
VOCAB = 256


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    num_layers: int = 4
    d_model: int = 256
    num_q_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 128
    ffn_dim: int = 640
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    context: int = 4096  # training window (BOS included); scored documents must not be longer

    @property
    def group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    def describe(self) -> str:
        return (f"{self.num_layers} layers, d_model {self.d_model}, {self.num_q_heads} q-heads / "
                f"{self.num_kv_heads} kv-heads x {self.head_dim}, SwiGLU {self.ffn_dim}, context {self.context}")


# The untrained stand-in CI scores when no trained weights file is present.
TINY = ModelConfig(num_layers=2, d_model=128, ffn_dim=256, context=2048)


def weight_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's name and shape; matrices are [out][in] as torch.nn.Linear keeps them."""
    d, q, kv = cfg.d_model, cfg.num_q_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    shapes = {"embed": (VOCAB, d)}
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        shapes.update({p + "attn_norm": (d,), p + "wq": (q, d), p + "wk": (kv, d), p + "wv": (kv, d),
                       p + "wo": (d, q), p + "mlp_norm": (d,), p + "w_gate": (cfg.ffn_dim, d),
                       p + "w_up": (cfg.ffn_dim, d), p + "w_down": (d, cfg.ffn_dim)})
    shapes.update({"final_norm": (d,), "head": (VOCAB, d)})
    return shapes


def parameter_count(cfg: ModelConfig) -> int:
    return sum(math.prod(shape) for shape in weight_shapes(cfg).values())


def random_weights(cfg: ModelConfig, seed: int = 0, qk_gain: float = 3.0) -> dict[str, np.ndarray]:
    """Deterministic untrained weights. qk_gain spreads the attention logits (their standard
    deviation is about qk_gain**2), so routing has blocks to skip even without training."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes(cfg).items():
        if len(shape) == 1:
            weights[name] = np.ones(shape, np.float32)
            continue
        std = 1.0 if name == "embed" else 1.0 / math.sqrt(shape[1])
        if name.endswith((".wq", ".wk")):
            std *= qk_gain
        weights[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    return weights


# ---------------------------------------------------------------------- weights file

def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and float32 per-row scales with matrix ~= values * scale[:, None]."""
    matrix = np.asarray(matrix, np.float32)
    scale = np.abs(matrix).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    values = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return values, scale.astype(np.float32)


def stored_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights as the file holds them (matrices rounded to int8 rows), in float32."""
    out = {}
    for name, w in weights.items():
        w = np.asarray(w, np.float32)
        if w.ndim == 2:
            values, scale = quantize_rows(w)
            w = values.astype(np.float32) * scale[:, None]
        out[name] = w
    return out


def save_weights(path, cfg: ModelConfig, weights: dict[str, np.ndarray], meta: dict) -> None:
    arrays = {"config": np.array(json.dumps(dataclasses.asdict(cfg))), "meta": np.array(json.dumps(meta))}
    for name, w in weights.items():
        if w.shape != weight_shapes(cfg)[name]:
            raise ValueError(f"weight {name} has shape {w.shape}, expected {weight_shapes(cfg)[name]}")
        if w.ndim == 2:
            arrays[name], arrays[name + ".scale"] = quantize_rows(w)
        else:
            arrays[name] = np.asarray(w, np.float32)
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path
        np.savez_compressed(f, **arrays)


def load_weights(path) -> tuple[ModelConfig, dict[str, np.ndarray], dict]:
    """(config, float32 weights, meta) of a file written by save_weights."""
    with np.load(path, allow_pickle=False) as data:
        cfg = ModelConfig(**json.loads(str(data["config"])))
        meta = json.loads(str(data["meta"]))
        weights = {}
        for name, shape in weight_shapes(cfg).items():
            w = data[name]
            if len(shape) == 2:
                w = w.astype(np.float32) * data[name + ".scale"][:, None]
            weights[name] = np.asarray(w, np.float32).reshape(shape)
    return cfg, weights, meta


# ---------------------------------------------------------------------- forward pass (NumPy)

def rope_tables(cfg: ModelConfig, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [positions][head_dim / 2] float32, computed in float64 (the torch model uses
    these same tables). Pair i of a head rotates by position * theta^(-2i / head_dim)."""
    inv_freq = cfg.rope_theta ** (-np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    angles = np.arange(positions, dtype=np.float64)[:, None] * inv_freq[None]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of the last axis."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bf16 as a bf16 KV cache stores them (nearest even)."""
    return sr.bf16_to_float32(sr.float32_to_bf16(x))


class NumpyByteModel:
    """The model in float32 NumPy, one decode step at a time (attention supplied by the caller)."""

    device_tensors = False

    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        self.w = {name: np.asarray(w, np.float32) for name, w in weights.items()}
        self.cos, self.sin = rope_tables(cfg, cfg.context)

    def prepare(self, docs: np.ndarray) -> np.ndarray:
        return np.asarray(docs, np.int64)

    def nll_step(self, tokens: np.ndarray, pos: int, attend) -> np.ndarray:
        """Negative log-likelihood (nats) of tokens[:, pos + 1] given tokens[:, :pos + 1], for a
        batch whose earlier positions went through `attend` already. attend(layer, q, k, v) gets
        float32 q [batch][q_heads][head_dim] and k, v [batch][kv_heads][head_dim] (RoPE applied)
        and returns the attention output shaped like q."""
        cfg, w = self.cfg, self.w
        batch = tokens.shape[0]
        x = w["embed"][tokens[:, pos]]
        cos, sin = self.cos[pos], self.sin[pos]
        for i in range(cfg.num_layers):
            p = f"layers.{i}."
            n = rms_norm(x, w[p + "attn_norm"], cfg.norm_eps)
            q = apply_rope((n @ w[p + "wq"].T).reshape(batch, cfg.num_q_heads, cfg.head_dim), cos, sin)
            k = apply_rope((n @ w[p + "wk"].T).reshape(batch, cfg.num_kv_heads, cfg.head_dim), cos, sin)
            v = (n @ w[p + "wv"].T).reshape(batch, cfg.num_kv_heads, cfg.head_dim)
            out = np.asarray(attend(i, q, k, v), np.float32)
            x = x + out.reshape(batch, -1) @ w[p + "wo"].T
            n = rms_norm(x, w[p + "mlp_norm"], cfg.norm_eps)
            gate = n @ w[p + "w_gate"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * (n @ w[p + "w_up"].T)) @ w[p + "w_down"].T
        logp = log_softmax(rms_norm(x, w["final_norm"], cfg.norm_eps) @ w["head"].T)
        return -logp[np.arange(batch), tokens[:, pos + 1]]

    def gather(self, steps: list) -> np.ndarray:
        """[batch][steps] float64 from the per-step results of nll_step."""
        return np.stack(steps, axis=1).astype(np.float64)

    def synchronize(self) -> None:
        pass

    def reference_attention(self, batch: int, max_tokens: int) -> "NumpyReferenceAttention":
        return NumpyReferenceAttention(self.cfg, batch, max_tokens)


class NumpyReferenceAttention:
    """The model's own attention: a KV cache of bf16-rounded float32 arrays (what a bf16 cache
    holds) and softmax attention in float32."""

    def __init__(self, cfg: ModelConfig, batch: int, max_tokens: int):
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_tokens, cfg.head_dim)
        self.cfg = cfg
        self.k, self.v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.length = [0] * cfg.num_layers

    def __call__(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        t = self.length[layer]
        self.k[layer, :, :, t] = round_to_bf16(k)
        self.v[layer, :, :, t] = round_to_bf16(v)
        self.length[layer] = t + 1
        keys, values = self.k[layer, :, :, :t + 1], self.v[layer, :, :, :t + 1]
        grouped = q.reshape(q.shape[0], cfg.num_kv_heads, cfg.group, cfg.head_dim)
        logits = np.einsum("bhgd,bhnd->bhgn", grouped, keys) / np.float32(math.sqrt(cfg.head_dim))
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        return np.einsum("bhgn,bhnd->bhgd", weights, values).reshape(q.shape)
