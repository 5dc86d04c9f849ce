"""External memory: the KV store (exact / faiss top-k) and memory-augmented attention layers."""
from __future__ import annotations

from .search import exact_topk
from .store import KVMemory, SearchResult

__all__ = ["KVMemory", "SearchResult", "exact_topk", "MemorizingAttention", "recall_at_k"]


def __getattr__(name: str):  # heavier / optional pieces load on first use
    if name == "MemorizingAttention":
        from .memorizing import MemorizingAttention

        return MemorizingAttention
    if name == "recall_at_k":
        from .faiss_backend import recall_at_k

        return recall_at_k
    raise AttributeError(f"module 'longlab.memory' has no attribute {name!r}")
