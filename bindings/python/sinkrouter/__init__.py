"""Python binding of libsinkrouter: long-context decode attention with sink-aware routing.

Pure ctypes, no compile step. The library is loaded on first use from SINKROUTER_LIBRARY (a
full path), else from this package's folder, else from the system search path.
"""
from ._abi import Backend, DType, Memory, RoutingMode, Status
from ._lib import LibraryLoadError, library
from .context import Context, DecodeStats
from .decode import Routing
from .dtypes import bf16_to_float32, float32_to_bf16
from .errors import SinkRouterError
from .kv_cache import KvCache, PagePool
from .merge import AttentionState

__version__ = "0.3.0"  # of this binding; the library's own is sinkrouter.library_version()


def library_version() -> str:
    """"major.minor.patch" of the loaded libsinkrouter."""
    return library().sr_version().decode()


__all__ = [
    "AttentionState", "Backend", "Context", "DType", "DecodeStats", "KvCache", "LibraryLoadError", "Memory",
    "PagePool", "Routing", "RoutingMode", "SinkRouterError", "Status", "bf16_to_float32", "float32_to_bf16", "library", "library_version",
]
