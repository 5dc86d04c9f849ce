"""longlab: learn and explore how language models handle long sequences.

Core attention lives in `longlab.attention`; method packages (`memory`, `parallel`, `models`, `tasks`,
`analysis`) load on first use so `import longlab` stays fast.
"""
from __future__ import annotations

import importlib

from .attention import attend, merge, reference_attention

__version__ = "0.1.0"

# name -> module that defines it; imported on first access.
_LAZY_ATTRS = {
    "dilated_attention": "longlab.attention.dilated",
    "DilatedAttention": "longlab.attention.dilated",
}
_SUBPACKAGES = ("attention", "memory", "parallel", "models", "tasks", "analysis", "bench")

__all__ = ["attend", "merge", "reference_attention", *_LAZY_ATTRS, *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"longlab.{name}")
    raise AttributeError(f"module 'longlab' has no attribute {name!r}")
