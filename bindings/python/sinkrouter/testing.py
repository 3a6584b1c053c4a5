"""Inputs and a reference for checking the runtime: a sink-structured context, and float64
attention over the same cache contents (used by the tests and the demo)."""
from __future__ import annotations

import numpy as np


def sink_structured_context(n_tokens: int, num_kv_heads: int, group: int, head_dim: int, seed: int = 0,
                            window: int = 64):
    """(k, v, q) of one sequence whose heads sit at an attention sink, as trained models' do.

    Per kv-head a unit direction u; each q-head of its group queries sqrt(head_dim) * u (plus a
    little noise), so with scale 1/sqrt(head_dim) a key's logit is about its component along u.
    Token 0 is the sink (key 0: logit 0, the largest; small value), the last `window` tokens sit
    near logit -5, every other token near -15 with a spread of 3 (upper tail cut at 1.5
    spreads). Routing skips most V blocks here; on random keys it has nothing to skip.

    k, v: float32 [n_tokens][num_kv_heads][head_dim]; q: float32 [1][num_kv_heads * group][head_dim].
    """
    if n_tokens <= window:
        raise ValueError(f"n_tokens = {n_tokens} must exceed window = {window}")
    rng = np.random.default_rng(seed)
    shape = (n_tokens, num_kv_heads, head_dim)
    direction = rng.standard_normal((num_kv_heads, head_dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    logits = -15.0 + 3.0 * np.minimum(rng.standard_normal((n_tokens, num_kv_heads)), 1.5)
    logits[-window:] = -5.0 + 0.5 * rng.standard_normal((window, num_kv_heads))
    logits[0] = 0.0
    k = logits[:, :, None] * direction[None] + 0.35 / np.sqrt(head_dim) * rng.standard_normal(shape)
    k[0] = 0.0
    v = rng.standard_normal(shape)
    v[0] *= 0.05
    q = np.sqrt(head_dim) * np.repeat(direction, group, axis=0)
    q += 0.05 * rng.standard_normal(q.shape)
    return k.astype(np.float32), v.astype(np.float32), q[None].astype(np.float32)


def attention_reference(k: np.ndarray, v: np.ndarray, q: np.ndarray, scale: float | None = None) -> np.ndarray:
    """float64 softmax attention of one sequence: k, v [n][num_kv_heads][head_dim], q
    [num_q_heads][head_dim] -> [num_q_heads][head_dim]. q-head h reads kv-head h // group."""
    k, v, q = (np.asarray(a, dtype=np.float64) for a in (k, v, q))
    num_kv_heads, head_dim = k.shape[1], k.shape[2]
    group = q.shape[0] // num_kv_heads
    scale = 1.0 / np.sqrt(head_dim) if scale is None else scale
    grouped = q.reshape(num_kv_heads, group, head_dim)
    logits = np.einsum("hgd,nhd->hgn", grouped, k) * scale
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("hgn,nhd->hgd", weights, v).reshape(q.shape)


def relative_error(actual: np.ndarray, expected: np.ndarray, axis=None) -> np.ndarray:
    """||actual - expected|| / ||expected|| in float64, over `axis` (all elements when None)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return np.linalg.norm(actual - expected, axis=axis) / np.linalg.norm(expected, axis=axis)
