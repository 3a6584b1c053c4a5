"""Calls from several Python threads at once: ctypes releases the GIL, decode steps run
concurrently, and each thread's error carries its own C message (sr_last_error is per thread)."""
from __future__ import annotations

import threading

import numpy as np

import sinkrouter as sr
from conftest import make_cache, random_kv


def run_in_threads(target, count: int) -> list:
    results, threads = [None] * count, []
    for index in range(count):
        def work(index=index):
            try:
                results[index] = target(index)
            except BaseException as error:  # reported to the test below
                results[index] = error
        threads.append(threading.Thread(target=work))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_decodes_match_serial_ones(context, rng):
    with make_cache(context, capacity_tokens=4096) as cache:
        ids = []
        for length in (500, 900, 1300):
            seq = cache.add_sequence()
            cache.append(seq, 0, *random_kv(rng, length, 2, 64))
            ids.append(seq)
        queries = [rng.standard_normal((3, 4, 64)).astype(np.float32) for _ in range(4)]
        expected = [cache.decode(ids, 0, q) for q in queries]

        def decode_repeatedly(index):
            return all(np.array_equal(cache.decode(ids, 0, queries[index]), expected[index]) for _ in range(25))

        assert run_in_threads(decode_repeatedly, 4) == [True] * 4


def test_each_thread_sees_its_own_error(context):
    with make_cache(context, num_layers=1) as cache:
        seq = cache.add_sequence()

        def fail_repeatedly(index):
            layer = 10 + index
            messages = set()
            for _ in range(200):
                try:
                    cache.sequence_length(seq, layer)
                except sr.SinkRouterError as error:
                    messages.add(error.message)
            return messages

        results = run_in_threads(fail_repeatedly, 4)
        assert results == [{f"layer = {10 + i} is out of range [0, 1)"} for i in range(4)]
