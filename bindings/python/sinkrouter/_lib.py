"""Finds and loads libsinkrouter once, and declares its functions.

Search order: the SINKROUTER_LIBRARY environment variable (a full path; when set, nothing else
is tried), a libsinkrouter shared library inside this package's folder (where a wheel would
vendor it), then the system search path. The error lists every place tried and why it failed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import sys
import threading

from . import _abi

ENVIRONMENT_VARIABLE = "SINKROUTER_LIBRARY"

if sys.platform == "win32":
    _FILE_NAMES = ["sinkrouter.dll"]
elif sys.platform == "darwin":
    _FILE_NAMES = ["libsinkrouter.1.dylib", "libsinkrouter.dylib"]
else:
    _FILE_NAMES = ["libsinkrouter.so.1", "libsinkrouter.so"]

_lock = threading.Lock()
_library: ctypes.CDLL | None = None


class LibraryLoadError(OSError):
    """libsinkrouter was not found, or the one found has another ABI version."""


def library() -> ctypes.CDLL:
    """The loaded libsinkrouter with every sr_ function declared (loaded on first use)."""
    global _library
    with _lock:
        if _library is None:
            _library = _declare(_load())
        return _library


def _candidates() -> list[str]:
    """Places to try, in order, when the environment variable is not set."""
    package_dir = pathlib.Path(__file__).resolve().parent
    found = [str(package_dir / name) for name in _FILE_NAMES if (package_dir / name).exists()]
    # Versioned names such as libsinkrouter.so.0.2.0 when no symlink was installed.
    found += sorted(str(p) for p in package_dir.glob("libsinkrouter.so.*") if str(p) not in found)
    system = ctypes.util.find_library("sinkrouter")
    if system:
        found.append(system)
    found += [name for name in _FILE_NAMES if name not in found]  # the dynamic loader's own search
    return found


def _load() -> ctypes.CDLL:
    explicit = os.environ.get(ENVIRONMENT_VARIABLE)
    places = [explicit] if explicit else _candidates()
    tried = []
    for place in places:
        try:
            return ctypes.CDLL(place)
        except OSError as error:
            tried.append(f"  {place}: {error}")
    where = f"{ENVIRONMENT_VARIABLE}={explicit}" if explicit else (
        f"{ENVIRONMENT_VARIABLE} is unset; searched the package folder and the system path")
    raise LibraryLoadError(
        f"could not load libsinkrouter ({where}). Tried:\n" + "\n".join(tried)
        + f"\nSet {ENVIRONMENT_VARIABLE} to the library's full path.")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    for name, (restype, argtypes) in _abi.FUNCTIONS.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    loaded = lib.sr_abi_version()
    if loaded != _abi.ABI_VERSION:
        raise LibraryLoadError(
            f"{lib._name} has ABI version {loaded}, but this binding was written for ABI version "
            f"{_abi.ABI_VERSION}")
    return lib
