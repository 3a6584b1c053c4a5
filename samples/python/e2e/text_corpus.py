"""Real text found on the machine (no network): Python sources and docs of the installed packages,
the standard library and /usr/share/doc, split deterministically by file into training text and
held-out documents.

A file's split and order come from a hash of its path relative to its root, so the same machine
always gives the same corpus. Held-out documents are Python sources; training never sees a file
whose content equals a held-out one (licenses and vendored copies repeat across packages).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import site
import sysconfig
import zlib

import numpy as np

from byte_model import BOS

SUFFIXES = (".py", ".md", ".rst", ".txt")
HELD_OUT_ONE_IN = 16  # files whose path hash falls in this bucket are never trained on
SKIP_DIRS = {"__pycache__", ".git", "node_modules"}


@dataclasses.dataclass(frozen=True)
class TextFile:
    key: str  # path relative to its root: stable across machines with the same packages
    path: str
    size: int

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.key.encode()) % HELD_OUT_ONE_IN == 0

    @property
    def order(self) -> int:
        return zlib.crc32(b"order:" + self.key.encode())


def default_roots() -> list[str]:
    """Installed packages (the interpreter's site-packages, where PyTorch lives when present), the
    standard library, and /usr/share/doc."""
    roots = [sysconfig.get_paths()[name] for name in ("purelib", "platlib")]
    try:
        roots += site.getsitepackages()
    except AttributeError:  # some virtualenvs' site module lacks it
        pass
    roots += [sysconfig.get_paths()["stdlib"], "/usr/share/doc"]
    return roots


def list_files(roots: list[str], min_bytes: int = 512, max_bytes: int = 256 * 1024) -> list[TextFile]:
    """Text files under the roots, each once (by inode: roots overlap and links repeat files), in
    hash order."""
    seen, files = set(), []
    for root in dict.fromkeys(os.path.realpath(r) for r in roots):
        if not os.path.isdir(root):
            continue
        for directory, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS)
            for name in sorted(names):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                if (info.st_dev, info.st_ino) in seen or not min_bytes <= info.st_size <= max_bytes:
                    continue
                seen.add((info.st_dev, info.st_ino))
                files.append(TextFile(os.path.relpath(path, root), path, info.st_size))
    files.sort(key=lambda f: (f.order, f.key))
    return files


def read_text(path: str) -> bytes | None:
    """The file's bytes, or None for binary or unreadable files."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return None if b"\0" in data else data


@dataclasses.dataclass
class Corpus:
    held_out: np.ndarray  # [documents][doc_tokens] uint8, each row BOS + the start of one file
    held_out_keys: list[str]
    training: np.ndarray  # uint8, training files one after another
    training_files: int

    def describe(self) -> str:
        docs, tokens = self.held_out.shape
        text = f"{docs} held-out Python files x {tokens - 1} bytes = {docs * (tokens - 1)} bytes scored"
        if self.training.size:
            text += f"; training text {self.training.size / 1e6:.1f} MB from {self.training_files} other files"
        return text


def build_corpus(roots: list[str], documents: int, doc_tokens: int, training_bytes: int) -> Corpus:
    """Held-out documents (BOS + the first doc_tokens - 1 bytes of held-out Python files) and up to
    training_bytes of training text from the other files."""
    files = list_files(roots)
    held, keys, held_hashes = [], [], set()
    for f in files:
        if len(held) == documents:
            break
        if f.held_out and f.key.endswith(".py") and f.size >= doc_tokens - 1:
            data = read_text(f.path)
            if data is not None and len(data) >= doc_tokens - 1 and hashlib.sha1(data).digest() not in held_hashes:
                held.append(np.frombuffer(bytes([BOS]) + data[:doc_tokens - 1], np.uint8))
                keys.append(f.key)
                held_hashes.add(hashlib.sha1(data).digest())
    if len(held) < documents:
        raise RuntimeError(f"found {len(held)} held-out Python files of at least {doc_tokens - 1} bytes under "
                           f"{roots}, need {documents}")
    chunks, total = [], 0
    for f in files:
        if total >= training_bytes:
            break
        if f.held_out:
            continue
        data = read_text(f.path)
        if data is None or hashlib.sha1(data).digest() in held_hashes:
            continue
        chunks.append(data)
        total += len(data)
    training = np.frombuffer(bytearray(b"".join(chunks)[:training_bytes]), np.uint8)  # writable, for torch
    return Corpus(np.stack(held), keys, training, len(chunks))
