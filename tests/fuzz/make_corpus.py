#!/usr/bin/python3
"""Writes the seed corpus of the API fuzzer (tests/fuzz/corpus/): one small binary file per
scenario, each a program of public API calls in the byte layout the harness reads
(harness.cpp and the ops_*.cpp files: one opcode byte, then that call's argument bytes).

    /usr/bin/python3 tests/fuzz/make_corpus.py            # rewrite tests/fuzz/corpus/
    /usr/bin/python3 tests/fuzz/make_corpus.py --count build/fuzz/tests/fuzz/sr_fuzz_api [DIR]
        # replay every file of DIR (default: the corpus) with SR_FUZZ_TRACE=1 and count the
        # distinct call sequences it covers
"""
import hashlib
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# Opcodes (harness.cpp, Harness::step).
CONTEXT_CREATE, CONTEXT_DESTROY, CACHE_CREATE, CACHE_DESTROY = 0, 1, 2, 3
SEQ_ADD, SEQ_FORK, SEQ_REMOVE, SEQ_TRUNCATE = 4, 5, 6, 7
KV_APPEND, KV_READ, DECODE, STATS, QUERIES, DEFAULTS = 8, 9, 10, 11, 12, 13

# Argument bytes (see the pickers in harness.cpp and the call files).
SIZE_OK, SIZE_ZERO, SIZE_FUTURE, SIZE_HUGE, SIZE_OLDER = 0, 1, 2, 3, 4
F32, FP8, F16, BF16 = 0, 1, 2, 4  # cache dtype byte (ops_handles.cpp)
IO_NULL, IO_CACHE, IO_F32, IO_F16, IO_BF16, IO_BAD_DTYPE, IO_BAD_SIZE, IO_DEVICE = range(8)
ST_DEFAULT, ST_PADDED, ST_HEAD_MAJOR, ST_NEGATIVE, ST_OVERLAP, ST_HUGE = 0, 3, 4, 5, 6, 7
ROUTE_OFF, ROUTE_TAU, ROUTE_BUDGET, ROUTE_BAD = 0, 1, 2, 3
SEQ_REMOVED, SEQ_UNKNOWN = 0xF1, 0xF2
LAYER_PAST, LAYER_NEGATIVE = 0xF0, 0xF1
# Edge counts (Harness::edge_int64): byte 0xF0 + i selects entry i.
EDGE_ZERO, EDGE_MINUS1, EDGE_MAX, EDGE_MIN, EDGE_2_31, EDGE_2_62, EDGE_MAX_15 = range(0xF0, 0xF7)


class Program:
    """Builds one input; tracks which slots are open, since the harness reads fewer bytes for a
    call on an empty cache slot."""

    def __init__(self):
        self.bytes = bytearray()
        self.open_contexts = set()
        self.open_caches = set()
        self.cache_context = {}

    def emit(self, *values):
        for v in values:
            self.bytes.append(v & 0xFF)
        return self

    def context(self, slot=0, threads=1, variant=0, size=SIZE_OK):
        # variant: 0 valid CPU context, 4 bad device, 5 NULL options, 6 bad backend, 7 bad threads
        if variant % 8 < 4 and size == SIZE_OK:
            self.open_contexts.add(slot)
        return self.emit(CONTEXT_CREATE, slot, (threads - 1) | (variant << 1), size)

    def destroy_context(self, slot=0):
        if not any(self.cache_context.get(c) == slot for c in self.open_caches):
            self.open_contexts.discard(slot)
        return self.emit(CONTEXT_DESTROY, slot)

    def cache(self, slot=0, ctx=0, layers=1, kv_heads=1, head_dim=0, page=0, capacity=7, dtype=F32,
              max_batch=3, max_q=0, size=SIZE_OK, nulls=0):
        # head_dim byte: 0 -> 64, 5 -> 128, 6 -> 256, 7 -> 96 (unsupported)
        # page byte: 0 -> 16, 8 -> 32, 12 -> 64, 13 -> 128, 14 -> 24 (unsupported)
        # capacity byte: (b % 12 + 1) * 8 tokens (+1 if b >= 0x80); >= 0xF0 an absurd size
        # max_batch byte: b % 4 + 1; max_q byte: 0 default, 4..6 kv_heads * (b - 3)
        self.emit(CACHE_CREATE, slot, ctx, layers - 1, kv_heads - 1, head_dim, page, capacity, dtype,
                  max_batch - 1, max_q, size, nulls)
        valid = (size == SIZE_OK and nulls == 0 and head_dim < 7 and page < 14 and capacity < 0xF0 and dtype < 6
                 and layers <= 3 and kv_heads <= 2 and max_batch <= 4 and max_q < 7 and ctx in self.open_contexts)
        if valid and slot not in self.open_caches:
            self.open_caches.add(slot)
            self.cache_context[slot] = ctx
        return self

    def destroy_cache(self, slot=0):
        self.open_caches.discard(slot)
        return self.emit(CACHE_DESTROY, slot)

    def add(self, cache=0, null_out=0):
        return self.emit(SEQ_ADD, cache, null_out)

    def fork(self, cache=0, seq=0, null_out=0):
        self.emit(SEQ_FORK, cache)
        return self.emit(seq, null_out) if cache in self.open_caches else self

    def remove(self, cache=0, seq=0):
        self.emit(SEQ_REMOVE, cache)
        return self.emit(seq) if cache in self.open_caches else self

    def truncate(self, cache=0, seq=0, length=0):
        self.emit(SEQ_TRUNCATE, cache)
        return self.emit(seq, length) if cache in self.open_caches else self

    def append(self, cache=0, seq=0, layer=0, n=1, nulls=0, io=IO_NULL, strides=ST_DEFAULT, pad=0, seed=1,
               style=0):
        # n: tokens (1..40); an EDGE_* byte for edge counts
        self.emit(KV_APPEND, cache)
        if cache in self.open_caches:
            count = n if n >= 0xF0 else (n - 1) % 40
            self.emit(seq, layer, count, nulls, io, strides, pad, seed, style)
        return self

    def read(self, cache=0, seq=0, layer=0, first=0, n_byte=0, nulls=0, io=IO_NULL, strides=ST_DEFAULT, pad=0):
        # first: token index (taken modulo length + 2) or EDGE_*; n_byte: count - 1 (modulo what is
        # left + 1) or EDGE_*
        self.emit(KV_READ, cache)
        if cache in self.open_caches:
            self.emit(seq, layer, first, n_byte, nulls, io, strides, pad)
        return self

    def decode(self, ctx=0, cache=0, layer=0, seqs=(0,), q_heads=0, q_dtype=0, out_dtype=0, scale=0,
               routing=ROUTE_OFF, tau=0, sink=0, window=0, budget=0, flags=0, size=SIZE_OK, seed=3, style=0,
               batch=None, route_from=0):
        # q_heads byte: kv_heads * (b % 3 + 1) for b % 8 < 6; 6 a non-multiple, 7 too many
        # dtype bytes: 0 f32, 2 f16, 3 bf16; refused: 0xF8 FP8, 0xF9 an unknown value, 0xFA CACHE
        # scale: 0 default, 4 0.25, 5 2, 6 -1, 7 NaN
        # tau: 0 12, 3 0.5, 4 4, 5 inf, 6 0, 7 NaN; sink: 0 4, 4 0, 5 1, 6 16, 7 -1;
        # window: 0 64, 4 0, 5 1, 6 8, 7 -1; budget: 0 1e-3, 4 0, 5 0.1, 6 1e-6, 7 -1
        # flags: 1 head_skipped_mass, 2 head_error_bound, 4 collect_stats, 8/16/24 NULL seq_ids/q/out,
        #        0x80 re-read the cache afterwards
        # route_from: 0 -1 (the backend's threshold), 3 0, 5 5 tokens, 6 2^20, 7 -2 (invalid)
        self.emit(DECODE, ctx, cache)
        if cache in self.open_caches:
            self.emit(layer, (len(seqs) - 1) if batch is None else batch, *seqs)
            self.emit(q_heads, q_dtype, out_dtype, scale, routing, tau, sink, window, budget, flags, size, seed,
                      style, route_from)
        return self

    def stats(self, ctx=0, kind=0, size=SIZE_OK):
        # kind: 0 read, 2 reset, 3 read with a NULL context, 0xC0 read into NULL
        self.emit(STATS, ctx, kind)
        return self.emit(size) if kind % 4 != 2 else self

    def query(self, which, target=0, seq=0, layer=0, null_out=0):
        # which: 1 sr_kv_cache_pages with a NULL (target = cache slot, seq = which pointer), 2 context
        # queries (target = context slot), 3 names of the value `target`, 4 versions, else
        # sr_seq_length(cache slot target, seq, layer)
        self.emit(QUERIES, which)
        if which % 8 == 1:
            return self.emit(target, seq)
        if which % 8 in (2, 3):
            return self.emit(target)
        if which % 8 == 4:
            return self
        self.emit(target)
        return self.emit(seq, layer, null_out) if target in self.open_caches else self

    def defaults(self, which, size=SIZE_OK):
        return self.emit(DEFAULTS, which, size)


def filled(p, cache=0, seq=0, tokens=20, layer=0, style=0, seed=5, io=IO_NULL):
    """Appends `tokens` tokens in chunks of at most 40 (an FP8 cache needs an io naming a dtype)."""
    while tokens > 0:
        n = min(tokens, 40)
        p.append(cache, seq, layer, n, seed=seed, style=style, io=io)
        tokens -= n
        seed += 1
    return p


def scenarios():
    s = {}

    def basic(dtype, kv_heads, head_dim=0, page=0, threads=1):
        p = Program().context(threads=threads).cache(kv_heads=kv_heads, dtype=dtype, head_dim=head_dim, page=page,
                                                     capacity=11, max_q=6)
        p.add()
        io = IO_F32 if dtype == FP8 else IO_NULL  # FP8 is never a buffer's type
        filled(p, tokens=37, io=io)
        p.read(first=0, n_byte=36, io=io).read(first=5, n_byte=3, io=IO_F32)
        p.decode(q_heads=0, flags=7).decode(q_heads=2, routing=ROUTE_TAU, flags=3, tau=4)
        p.decode(routing=ROUTE_BUDGET, budget=5, flags=7).stats().destroy_cache().destroy_context()
        return p

    for name, dtype in (("f32", F32), ("f16", F16), ("bf16", BF16), ("fp8", FP8)):
        for kv in (1, 2):
            s[f"basic_{name}_kv{kv}"] = basic(dtype, kv)
    s["basic_fp8_head_dim_128"] = basic(FP8, 2, head_dim=5, threads=2)
    s["basic_head_dim_128"] = basic(BF16, 1, head_dim=5)
    s["basic_head_dim_256"] = basic(F16, 1, head_dim=6)
    s["basic_page_32_two_threads"] = basic(F32, 2, page=8, threads=2)
    s["basic_page_64"] = basic(BF16, 2, page=12)
    s["basic_page_128"] = basic(F32, 1, page=13, threads=2)

    # Copy-on-write: the child appends into a shared page; both read back and decode together.
    p = Program().context().cache(capacity=7, kv_heads=2, dtype=BF16).add()
    filled(p, tokens=20)
    p.fork().append(seq=1, n=5, seed=9).append(seq=0, n=3, seed=10).read(seq=0, n_byte=22).read(seq=1, n_byte=24)
    p.decode(seqs=(0, 1), flags=7).decode(seqs=(1, 0, 1), routing=ROUTE_BUDGET, flags=3)
    p.remove(seq=0).read(seq=0, n_byte=24).decode(seqs=(0,), flags=4).stats()
    s["fork_copy_on_write"] = p

    # Forks of forks, removed in another order than created.
    p = Program().context(threads=2).cache(capacity=11, layers=2, kv_heads=1, dtype=F16).add()
    filled(p, tokens=33).fork().fork(seq=1).append(seq=2, n=16).fork(seq=2, null_out=0)
    p.remove(seq=1).truncate(seq=1, length=17).append(seq=0, layer=1, n=12).remove(seq=0)
    p.decode(seqs=(0, 1), flags=0x87).decode(layer=1, seqs=(0,), flags=0x87)
    s["fork_chain_remove_truncate"] = p

    # Truncate inside a page, at a page boundary, to zero, past the end; then append again.
    p = Program().context().cache(capacity=7, dtype=F32).add()
    filled(p, tokens=40).truncate(length=35).append(n=4).truncate(length=32).read(n_byte=31)
    p.truncate(length=0).append(n=3).truncate(length=9).truncate(length=EDGE_MINUS1).truncate(length=EDGE_MAX)
    p.decode(flags=7)
    s["truncate_paths"] = p

    # The pool runs out: appends fail with CACHE_FULL and change nothing; remove frees pages.
    p = Program().context().cache(capacity=1, page=0, dtype=BF16).add().add()
    p.append(n=16).append(n=1).append(seq=1, n=1).fork().append(seq=2, n=1).remove(seq=0).append(seq=1, n=16)
    p.append(seq=0, n=EDGE_MAX).append(seq=0, n=EDGE_MAX_15, io=IO_F32, strides=ST_PADDED, pad=3)
    s["cache_full"] = p

    # Multi-layer: layers fill independently; truncate cuts every layer.
    p = Program().context().cache(layers=3, kv_heads=2, capacity=9, dtype=F16, max_q=5).add()
    p.append(layer=0, n=20).append(layer=2, n=7).append(layer=1, n=33).decode(layer=2, q_heads=1, flags=7)
    p.decode(layer=1, q_heads=2, routing=ROUTE_TAU, tau=3, flags=3).decode(layer=0, routing=ROUTE_BUDGET, flags=7)
    p.truncate(length=10).read(layer=1, n_byte=9).decode(layer=2, flags=1).query(0, 0, 0, 2, 0)
    s["layers_independent"] = p

    # Caller layouts: dtypes, padded strides, head-major, and layouts the header rules out.
    p = Program().context().cache(kv_heads=2, capacity=9, dtype=F32).add()
    for io in (IO_CACHE, IO_F32, IO_F16, IO_BF16):
        p.append(n=3, io=io, strides=ST_PADDED, pad=0x1B, style=3)
        p.append(n=2, io=io, strides=ST_HEAD_MAJOR, pad=0x09, style=1)
    p.append(n=2, io=IO_BF16, style=4)
    for bad in ((IO_BAD_DTYPE, ST_DEFAULT), (IO_BAD_SIZE, ST_DEFAULT), (IO_DEVICE, ST_DEFAULT),
                (IO_F32, ST_NEGATIVE), (IO_F32, ST_OVERLAP), (IO_F32, ST_HUGE)):
        p.append(n=2, io=bad[0], strides=bad[1], pad=1)
    for io in (IO_CACHE, IO_F16, IO_BF16):
        p.read(n_byte=6, io=io, strides=ST_PADDED, pad=0x2A).read(first=3, n_byte=4, io=io, strides=ST_HEAD_MAJOR)
    p.read(n_byte=2, nulls=1).read(n_byte=2, nulls=2).read(n_byte=2, nulls=3).read(io=IO_F32, strides=ST_HUGE, pad=3)
    s["io_layouts"] = p

    p = Program().context().cache(kv_heads=1, capacity=9, dtype=BF16).add()
    p.append(n=12, io=IO_F32, style=4).append(n=5, io=IO_F16, style=1).append(n=3, io=IO_F32, style=3)
    p.read(n_byte=19, io=IO_F16).read(n_byte=19, io=IO_F32).decode(flags=7, out_dtype=2, q_dtype=3)
    s["dtype_rounding_bf16"] = p
    p = Program().context().cache(kv_heads=2, capacity=9, dtype=F16).add()
    p.append(n=12, io=IO_F32, style=1).append(n=5, io=IO_BF16, style=4).append(n=3, io=IO_F32, style=2)
    p.read(n_byte=19, io=IO_BF16).read(n_byte=19, io=IO_F32).decode(flags=7, out_dtype=3, q_dtype=2)
    s["dtype_rounding_f16"] = p
    # FP8: rows from each buffer type (tiny rows read back as zeros), reads in each; the cache's
    # own dtype (NULL io, SR_DTYPE_CACHE) and FP8 named as a buffer's type are refused.
    p = Program().context().cache(kv_heads=2, capacity=9, dtype=FP8).add()
    p.append(n=12, io=IO_F32, style=0).append(n=5, io=IO_BF16, style=4).append(n=3, io=IO_F16, style=1)
    p.append(n=4, io=IO_F32, strides=ST_PADDED, pad=0x1B, style=3).append(n=2, io=IO_F32, style=2)
    p.append(n=2, io=IO_NULL).append(n=2, io=IO_CACHE).append(n=2, io=IO_BAD_DTYPE | 0x40)
    p.read(n_byte=25, io=IO_F32).read(n_byte=25, io=IO_F16).read(first=3, n_byte=9, io=IO_BF16, strides=ST_HEAD_MAJOR)
    p.read(n_byte=3, io=IO_NULL).read(n_byte=3, io=IO_CACHE).read(n_byte=3, io=IO_BAD_DTYPE | 0x40)
    p.decode(flags=7).decode(flags=7, out_dtype=2, q_dtype=3).decode(q_dtype=0xF8).decode(out_dtype=0xF8)
    p.fork().append(seq=1, n=3, io=IO_F32, seed=9).truncate(seq=0, length=20).append(n=6, io=IO_BF16, seed=11)
    p.decode(seqs=(0, 1), routing=ROUTE_TAU, tau=4, flags=7).decode(seqs=(1, 0), routing=ROUTE_BUDGET, flags=7)
    s["dtype_rounding_fp8"] = p

    # A removed sequence is unknown everywhere; ids are never reused.
    p = Program().context().cache(capacity=5).add()
    filled(p, tokens=10).remove().add().append(seq=SEQ_REMOVED, n=2).read(seq=SEQ_REMOVED, n_byte=0)
    p.fork(seq=SEQ_REMOVED).truncate(seq=SEQ_REMOVED).remove(seq=SEQ_REMOVED).decode(seqs=(SEQ_REMOVED,))
    p.query(5, 0, SEQ_REMOVED, 0, 0).append(seq=SEQ_UNKNOWN).decode(seqs=(0, SEQ_UNKNOWN))
    s["removed_and_unknown_ids"] = p

    # Edge values for every count, index and layer.
    p = Program().context().cache(layers=2, capacity=5).add()
    filled(p, tokens=9)
    for edge in (EDGE_ZERO, EDGE_MINUS1, EDGE_MAX, EDGE_MIN, EDGE_2_31, EDGE_2_62, EDGE_MAX_15):
        p.append(n=edge).read(first=edge, n_byte=0).read(first=1, n_byte=edge).truncate(length=edge)
    for layer in (LAYER_PAST, LAYER_NEGATIVE, 0xF2, 0xF3):
        p.append(layer=layer, n=1).read(layer=layer).query(0, 0, 0, layer, 0).decode(layer=layer)
    s["edge_arguments"] = p

    # Invalid cache options, one field at a time, then valid ones.
    p = Program().context()
    p.cache(layers=0xF1 + 1).cache(kv_heads=0xF1 + 1).cache(head_dim=7).cache(head_dim=0x87).cache(page=14)
    p.cache(page=15).cache(dtype=6).cache(dtype=7).cache(max_batch=0xF0 + 1).cache(max_q=7).cache(max_q=0x87)
    for c in range(0xF0, 0xF8):
        p.cache(capacity=c)
    p.cache(size=SIZE_ZERO).cache(size=SIZE_FUTURE).cache(size=SIZE_HUGE).cache(size=SIZE_OLDER)
    p.cache(nulls=1).cache(nulls=2).cache(ctx=1).cache(slot=1, capacity=0x85).cache(slot=1, capacity=3)
    s["cache_options_invalid"] = p

    # Context options: bad device, NULL options (AUTO), bad backend, bad thread counts, struct sizes.
    p = Program()
    for variant in (4, 4 | 8, 5, 6, 6 | 8, 7, 7 | 8):
        p.context(variant=variant)
    p.context(size=SIZE_ZERO).context(size=SIZE_FUTURE).context(size=SIZE_OLDER).emit(CONTEXT_CREATE, 0, 0xE0, 0)
    p.context(slot=1, threads=2).context(slot=1).query(2, 1).query(2, 0).destroy_context(1).destroy_context(0)
    s["context_options"] = p

    # Decode arguments: each invalid one, then routing variants over a longer context.
    p = Program().context(threads=2).cache(kv_heads=2, capacity=11, dtype=BF16, max_batch=4, max_q=5).add().add()
    filled(p, tokens=48, seq=0, style=3)
    filled(p, tokens=40, seq=1, style=0)
    p.decode(batch=0xF0).decode(batch=0xF1).decode(batch=0xF2, seqs=(0, 1, 0, 1, 0)).decode(q_heads=6)
    p.decode(q_heads=7).decode(q_dtype=0xF8).decode(out_dtype=0xF9).decode(scale=6).decode(scale=7)
    p.decode(scale=0x87).decode(routing=ROUTE_BAD).decode(routing=0x83).decode(routing=ROUTE_TAU, tau=6)
    p.decode(routing=ROUTE_TAU, tau=7).decode(routing=ROUTE_TAU, sink=4, window=4)
    p.decode(routing=ROUTE_BUDGET, budget=4).decode(routing=ROUTE_BUDGET, budget=7)
    p.decode(routing=ROUTE_TAU, sink=7).decode(routing=ROUTE_TAU, window=7).decode(flags=8).decode(flags=16)
    p.decode(flags=24).decode(size=SIZE_FUTURE).decode(size=SIZE_ZERO)
    for routing, tau, sink, window, budget in ((ROUTE_TAU, 3, 5, 6, 0), (ROUTE_TAU, 5, 0, 0, 4),
                                               (ROUTE_TAU, 4, 4, 5, 5), (ROUTE_BUDGET, 0, 5, 6, 6),
                                               (ROUTE_BUDGET, 0, 0x87, 0x87, 5), (ROUTE_OFF, 7, 7, 7, 7)):
        p.decode(seqs=(0, 1), q_heads=2, routing=routing, tau=tau, sink=sink, window=window, budget=budget,
                 flags=7, scale=5, q_dtype=2, out_dtype=3)
    p.stats().stats(kind=2).stats().stats(ctx=1).stats(kind=3).stats(kind=0xC0)
    s["decode_arguments"] = p

    # Two contexts: a cache on one, decoded through the other; statistics are per context.
    p = Program().context(0).context(1, threads=2).cache(ctx=1, capacity=7, kv_heads=2).add()
    filled(p, tokens=30).decode(ctx=0, flags=4).decode(ctx=1, flags=4, routing=ROUTE_BUDGET)
    p.stats(0).stats(1).stats(1, kind=2).stats(1).destroy_context(0).decode(ctx=0).destroy_context(1)
    p.destroy_cache().destroy_context(1).stats(1)
    s["two_contexts"] = p

    # Destroy order: caches with live sequences, then the context; handles NULL afterwards.
    p = Program().context().cache(slot=0).cache(slot=1, capacity=3).add(0).add(1)
    p.append(cache=1, n=7).fork(cache=1).destroy_cache(0).destroy_cache(1).destroy_cache(2)
    p.add(0).fork(0).remove(0).truncate(0).append(0).read(0).decode(cache=0).destroy_context(0).stats(0)
    p.query(1, 0, 0).query(5, 0)
    s["destroy_and_null_handles"] = p

    # Out-parameter NULLs and the struct default functions.
    p = Program().context().cache(capacity=3).add(null_out=1).add().fork(null_out=1)
    for which in range(4):
        for size in (SIZE_OK, SIZE_ZERO, SIZE_FUTURE, SIZE_HUGE, SIZE_OLDER):
            p.defaults(which, size)
        p.defaults(0xF0 | which)
    p.query(1, 0, 0).query(1, 0, 1).query(1, 0, 2).stats(kind=0xC0)
    s["null_out_and_defaults"] = p

    # Names, versions, lengths.
    p = Program().context().cache(capacity=3, layers=2).add().append(layer=1, n=3)
    for value in (0, 1, 5, 10, 11, 0xFF, 0x80, 3):
        p.query(3, value)
    p.query(4).query(5, 0, 0, 1, 0).query(5, 0, 0, 0, 1).query(0, 0, 0, 0xF0, 0).query(2, 0).query(2, 1)
    s["names_versions_lengths"] = p

    # Three caches of different dtypes on one context, interleaved.
    p = Program().context(threads=2)
    for slot, dtype in ((0, F32), (1, F16), (2, BF16)):
        p.cache(slot=slot, dtype=dtype, kv_heads=2, capacity=5, max_q=5).add(slot)
    for slot in (0, 1, 2):
        p.append(cache=slot, n=9, io=IO_F32, style=slot).fork(cache=slot).append(cache=slot, seq=1, n=2)
    for slot in (0, 1, 2):
        p.decode(cache=slot, seqs=(0, 1), q_heads=1, routing=slot, flags=7).read(cache=slot, seq=1, n_byte=10)
    p.destroy_cache(1).stats()
    s["three_caches"] = p

    # A long sequence over many pages with two threads: several splits per head.
    p = Program().context(threads=2).cache(kv_heads=1, capacity=11, dtype=F16, page=0, max_q=6).add()
    filled(p, tokens=96, style=3)
    p.decode(q_heads=2, routing=ROUTE_TAU, tau=4, sink=5, window=6, flags=7).decode(q_heads=2, flags=7)
    p.decode(q_heads=2, routing=ROUTE_BUDGET, budget=5, flags=7, seed=11).truncate(length=50).decode(flags=7)
    s["long_sequence_splits"] = p

    # An empty sequence in a decode batch; appends to layer 1 only.
    p = Program().context().cache(layers=2, capacity=3).add().add().append(seq=1, layer=1, n=4)
    p.decode(seqs=(0,)).decode(layer=1, seqs=(1, 0)).decode(layer=1, seqs=(1,), flags=7).decode(layer=0, seqs=(1,))
    s["empty_sequence_in_batch"] = p
    return s


def random_program(rng, dtypes=(F32, F16, BF16), append_ios=(IO_NULL, IO_NULL, IO_CACHE, IO_F32, IO_F16, IO_BF16)):
    """A random walk over the calls with mostly valid arguments: call orders no scenario above
    spells out (fixed seed, so the corpus is the same on every run)."""
    p = Program().context(0, threads=rng.choice((1, 2)))
    if rng.random() < 0.3:
        p.context(1, threads=2)
    for slot in range(rng.choice((1, 1, 2, 3))):
        p.cache(slot=slot, ctx=rng.choice(sorted(p.open_contexts)), layers=rng.choice((1, 1, 2, 3)),
                kv_heads=rng.choice((1, 2)), head_dim=rng.choice((0, 0, 0, 5)), page=rng.choice((0, 0, 8, 12)),
                capacity=rng.randrange(0, 12), dtype=rng.choice(dtypes), max_batch=rng.randrange(1, 5),
                max_q=rng.choice((0, 4, 5, 6)))
        p.add(slot)
    for _ in range(rng.randrange(8, 40)):
        open_slots = sorted(p.open_caches)
        cache = rng.choice(open_slots) if open_slots and rng.random() < 0.9 else rng.randrange(3)
        seq, ctx = rng.randrange(4), rng.randrange(2)
        kind = rng.choices(("append", "read", "decode", "add", "fork", "remove", "truncate", "stats", "query",
                            "cache", "destroy_cache", "defaults"),
                           weights=(30, 10, 20, 6, 6, 4, 6, 4, 3, 2, 1, 1))[0]
        if kind == "append":
            p.append(cache, seq, layer=rng.randrange(3), n=rng.randrange(1, 41),
                     io=rng.choice(append_ios),
                     strides=rng.choice((ST_DEFAULT, ST_DEFAULT, ST_PADDED, ST_HEAD_MAJOR)), pad=rng.randrange(256),
                     seed=rng.randrange(256), style=rng.randrange(5))
        elif kind == "read":
            p.read(cache, seq, layer=rng.randrange(3), first=rng.randrange(40), n_byte=rng.randrange(40),
                   nulls=rng.choice((0, 0, 1, 2)), io=rng.choice((IO_NULL, IO_F32, IO_F16, IO_BF16)),
                   strides=rng.choice((ST_DEFAULT, ST_PADDED, ST_HEAD_MAJOR)), pad=rng.randrange(256))
        elif kind == "decode":
            p.decode(ctx, cache, layer=rng.randrange(3), seqs=tuple(rng.randrange(4) for _ in range(rng.randrange(1, 4))),
                     q_heads=rng.randrange(3), q_dtype=rng.choice((0, 2, 3)), out_dtype=rng.choice((0, 2, 3)),
                     scale=rng.choice((0, 4, 5)), routing=rng.choice((ROUTE_OFF, ROUTE_TAU, ROUTE_BUDGET)),
                     tau=rng.choice((0, 3, 4, 5)), sink=rng.choice((0, 4, 5, 6)), window=rng.choice((0, 4, 5, 6)),
                     budget=rng.choice((0, 4, 5, 6)), flags=rng.randrange(8) | rng.choice((0, 0x80)),
                     seed=rng.randrange(256), style=rng.randrange(5))
        elif kind == "add":
            p.add(cache)
        elif kind == "fork":
            p.fork(cache, seq)
        elif kind == "remove":
            p.remove(cache, seq)
        elif kind == "truncate":
            p.truncate(cache, seq, length=rng.randrange(60))
        elif kind == "stats":
            p.stats(ctx, kind=rng.choice((0, 0, 2)))
        elif kind == "query":
            p.query(rng.choice((0, 2, 3, 4, 5)), rng.randrange(3), rng.randrange(4), rng.randrange(3), 0)
        elif kind == "cache":
            p.cache(slot=cache, ctx=ctx, capacity=rng.randrange(12), kv_heads=rng.choice((1, 2)))
        elif kind == "destroy_cache":
            p.destroy_cache(cache)
        else:
            p.defaults(rng.randrange(4), rng.choice((SIZE_OK, SIZE_FUTURE)))
    return p


def write_corpus():
    os.makedirs(CORPUS, exist_ok=True)
    for old in os.listdir(CORPUS):
        os.remove(os.path.join(CORPUS, old))
    programs = scenarios()
    rng = random.Random(2026)
    for i in range(60):
        programs[f"random_walk_{i:02d}"] = random_program(rng)
    # FP8 caches among the others, appended to mostly through named buffer types (its own stream,
    # so the walks above stay as they were).
    rng = random.Random(2027)
    for i in range(12):
        programs[f"random_walk_fp8_{i:02d}"] = random_program(
            rng, dtypes=(FP8, FP8, F32, BF16), append_ios=(IO_NULL, IO_CACHE, IO_F32, IO_F32, IO_F16, IO_BF16))
    for name, program in sorted(programs.items()):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(bytes(program.bytes))
    print(f"wrote {len(programs)} seed inputs to {CORPUS}")


def count_sequences(binary, directory):
    """Distinct call sequences over the files: as call families (the harness's 14 steps), and as
    the public functions the harness called with the status each returned."""
    families, calls_with_status, pairs, steps = set(), set(), set(), 0
    files = sorted(os.listdir(directory))
    for name in files:
        path = os.path.join(directory, name)
        # No leak check here: it would run each input a second time and double the trace.
        run = subprocess.run([binary, "-detect_leaks=0", path], env=dict(os.environ, SR_FUZZ_TRACE="1"),
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{name}: the harness failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        lines = run.stderr.splitlines()
        trace = [line.split()[1] for line in lines if line.startswith("SR_FUZZ_CALL ")]
        checked = [" ".join(line.split()[:3]) for line in lines if line.startswith("  sr_")]
        steps += len(trace)
        families.add(hashlib.sha1(" ".join(trace).encode()).hexdigest())
        calls_with_status.add(hashlib.sha1("|".join(checked).encode()).hexdigest())
        pairs.update(zip(trace, trace[1:]))
    print(f"{len(files)} inputs, {steps} steps: {len(families)} distinct sequences of call families, "
          f"{len(calls_with_status)} distinct sequences of (function, status), "
          f"{len(pairs)} of 196 consecutive call-family pairs")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--count":
        count_sequences(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else CORPUS)
    else:
        write_corpus()
