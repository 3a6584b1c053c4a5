"""Every C object is destroyed exactly once, whatever order Python lets go of it in.

The library's own destroy functions are wrapped (and still called) to record each handle they
receive; a handle destroyed twice or never shows up in the record.
"""
from __future__ import annotations

import gc
import os
import pathlib
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import sinkrouter as sr
from conftest import make_cache, random_kv


class DestroyLog:
    """Wraps sr_context_destroy and sr_kv_cache_destroy; objects created afterwards use them."""

    def __init__(self, monkeypatch):
        self.events = []  # ("context" | "cache", handle) in call order
        lib = sr.library()
        for kind, name in (("context", "sr_context_destroy"), ("cache", "sr_kv_cache_destroy")):
            real = getattr(lib, name)
            monkeypatch.setattr(lib, name, self._recording(kind, real))

    def _recording(self, kind, real):
        def destroy(handle):
            self.events.append((kind, handle))
            real(handle)
        return destroy

    def count(self, kind, handle) -> int:
        return Counter(self.events)[(kind, handle)]


@pytest.fixture
def log(monkeypatch):
    return DestroyLog(monkeypatch)


def test_close_twice_then_collect(log):
    context = sr.Context(sr.Backend.CPU)
    cache = make_cache(context)
    handles = context._handle, cache._handle
    cache.close()
    cache.close()
    context.close()
    context.close()
    del cache, context
    gc.collect()
    assert log.events == [("cache", handles[1]), ("context", handles[0])]


def test_with_blocks_and_garbage_collection(log):
    with sr.Context(sr.Backend.CPU) as context:
        with make_cache(context) as cache:
            cache_handle = cache._handle
        context_handle = context._handle
        unclosed = make_cache(context)
        unclosed_handle = unclosed._handle
        del unclosed
        gc.collect()
        assert len(log.events) == 2  # (the allocator may hand out a freed address again)
    assert log.events == [("cache", cache_handle), ("cache", unclosed_handle), ("context", context_handle)]


def test_cache_outlives_its_python_context_reference(log, rng):
    context = sr.Context(sr.Backend.CPU)
    context_handle = context._handle
    cache = make_cache(context)
    del context
    gc.collect()
    assert log.events == []
    seq = cache.add_sequence()
    cache.append(seq, 0, *random_kv(rng, 40, 2, 64))
    assert np.isfinite(cache.decode(seq, 0, np.ones((1, 4, 64), np.float32))).all()
    cache_handle = cache._handle
    cache.close()
    assert log.events == [("cache", cache_handle), ("context", context_handle)]


def test_closing_a_context_waits_for_its_caches(log, rng):
    context = sr.Context(sr.Backend.CPU)
    context_handle = context._handle
    first, second = make_cache(context), make_cache(context)
    context.close()
    assert context.closed and log.events == []
    seq = second.add_sequence()
    second.append(seq, 1, *random_kv(rng, 10, 2, 64))
    second.decode(seq, 1, np.ones((1, 2, 64), np.float32))
    first.close()
    assert log.count("context", context_handle) == 0
    second.close()
    assert log.count("context", context_handle) == 1
    del first, second, context
    gc.collect()
    assert log.count("context", context_handle) == 1 and len(log.events) == 3


def test_reference_cycles_free_cache_before_context(log):
    context = sr.Context(sr.Backend.CPU)
    cache = make_cache(context)
    context.cycle, cache.cycle = cache, context  # only the cycle collector can free these
    handles = cache._handle, context._handle
    del cache, context
    gc.collect()
    assert log.events == [("cache", handles[0]), ("context", handles[1])]


def test_failed_creation_frees_nothing_and_holds_nothing(log, context):
    with pytest.raises(sr.SinkRouterError):
        make_cache(context, head_dim=100)
    gc.collect()
    assert log.events == []
    handle = context._handle
    context.close()  # no cache is open: destroyed at once
    assert log.events == [("context", handle)]


def test_many_cycles_return_every_page(context, rng):
    with make_cache(context, num_layers=2, capacity_tokens=512, page_tokens=16) as cache:
        total = cache.pages().total
        assert cache.pages().free == total
        for cycle in range(60):
            parent = cache.add_sequence()
            length = 1 + int(rng.integers(1, 100))
            for layer in range(2):
                cache.append(parent, layer, *random_kv(rng, length, 2, 64))
            child = cache.fork_sequence(parent)
            cache.append(child, 0, *random_kv(rng, 17, 2, 64))
            assert cache.pages().free < total
            cache.truncate_sequence(child, length // 2)
            cache.remove_sequence(parent if cycle % 2 else child)
            cache.remove_sequence(child if cycle % 2 else parent)
            assert cache.pages().free == total


def test_many_caches_created_and_dropped(log, context):
    created = []
    for _ in range(100):
        cache = make_cache(context, capacity_tokens=64)
        created.append(cache._handle)
        if len(created) % 2:
            cache.close()
        del cache
    gc.collect()
    # Addresses are reused once freed, so compare the multisets: each creation, one destroy.
    assert Counter(h for kind, h in log.events if kind == "cache") == Counter(created)
    assert len(log.events) == 100


def test_objects_left_open_at_exit_are_cleaned_up_quietly(tmp_path):
    code = ("import numpy as np, sinkrouter as sr\n"
            "context = sr.Context(sr.Backend.CPU)\n"
            "cache = sr.KvCache(context, num_layers=1, num_kv_heads=1, head_dim=64, capacity_tokens=32)\n"
            "seq = cache.add_sequence()\n"
            "bits = np.ones((3, 1, 64), np.uint16)\n"
            "cache.append(seq, 0, bits, bits, dtype=sr.DType.BF16)\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1]),
               SINKROUTER_LIBRARY=os.path.abspath(sr.library()._name))  # the child runs elsewhere
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert result.stderr == ""
