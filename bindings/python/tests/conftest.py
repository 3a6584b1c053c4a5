"""Shared fixtures: a CPU context per test and small caches on it."""
from __future__ import annotations

import numpy as np
import pytest

import sinkrouter as sr


@pytest.fixture
def context():
    with sr.Context(sr.Backend.CPU) as ctx:
        yield ctx


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def make_cache(context, **options) -> sr.KvCache:
    """A small f32 cache (2 layers, 2 kv-heads, head_dim 64) unless options say otherwise."""
    settings = dict(num_layers=2, num_kv_heads=2, head_dim=64, capacity_tokens=1024, dtype=sr.DType.F32)
    settings.update(options)
    return sr.KvCache(context, **settings)


def random_kv(rng, n_tokens: int, num_kv_heads: int, head_dim: int):
    shape = (n_tokens, num_kv_heads, head_dim)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
