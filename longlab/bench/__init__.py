"""Benchmarks: each module in this package is one `longlab bench NAME` target.

A target module defines NAME (str), HELP (one line), `add_arguments(parser)` and `run(args) -> list[dict]`.
Results are ratios measured in one run (never timed assertions in tests); `common` writes CSV + a table.
"""
from __future__ import annotations

import importlib
import pkgutil


def targets() -> dict:
    """Map NAME -> module for every benchmark module in this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return dict(sorted(found.items()))
