"""longlab: learn and explore how language models handle long sequences.

Core attention lives in `longlab.attention`; method packages (`memory`, `parallel`, `models`, `tasks`,
`analysis`) load on first use so `import longlab` stays fast.
"""
from __future__ import annotations

import importlib
import os

# PyTorch's CPU allocator backs large tensors with transparent huge pages when this is set before torch is
# first imported (read once, at its first allocation). Attention over strided rows (dilated branches, r rows
# apart, each row on its own 4 KiB page once r >= 16) then misses the TLB less: the r = 32 branch at N = 1M ran
# at 132 against 102 GFLOP/s (4 interleaved pairs of runs on 2 cores). A user's own setting wins; it does nothing
# if torch was imported before longlab.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .attention import attend, merge, reference_attention  # noqa: E402

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
