"""External memory: the KV store (exact / faiss top-k), memory lanes, and memory-augmented attention layers.

Layers live in their own modules (they build on `longlab.models.layers`): `longlab.memory.memorizing`,
`longlab.memory.focused.layer`; their common base is `longlab.memory.base.MemoryLayer`; run a model with chosen memory
lanes through `longlab.memory.lanes.memory_lanes`.
"""
from __future__ import annotations

from .lanes import LayerReads, Retrieval, memory_lanes
from .recall import compare_search, recall_at_k
from .search import exact_topk
from .store import KVMemory, SearchResult

__all__ = ["KVMemory", "SearchResult", "exact_topk", "recall_at_k", "compare_search", "memory_lanes", "LayerReads",
           "Retrieval"]
