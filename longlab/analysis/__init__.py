"""Analysis of attention patterns and kernels: allocation over distance, FLOPs/memory vs N, path lengths.

Modules load on first use: `allocation`, `complexity`, `dense_cost`, `paths`, `memtrack`.
"""
from __future__ import annotations

import importlib

_MODULES = ("allocation", "complexity", "dense_cost", "paths", "memtrack")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
