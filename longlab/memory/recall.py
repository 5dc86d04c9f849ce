"""Exact vs approximate kNN search over a KVMemory: recall@k and timings (notebook 03, `longlab bench memory`)."""
from __future__ import annotations

import time

import torch

from .store import KVMemory


def recall_at_k(approx, exact) -> float:
    """Fraction of exact top-k slot indices that the approximate search also returned (SearchResults)."""
    if exact.indices.numel() == 0:
        return 1.0
    hits = (approx.indices[..., :, None] == exact.indices[..., None, :]).any(-2)
    return hits.float().mean().item()


def compare_search(keys: torch.Tensor, queries: torch.Tensor, k: int = 32, kinds=("flat", "hnsw", "ivf"),
                   normalize: bool = True) -> list[dict]:
    """Exact torch search vs faiss indexes on the same keys (H, n, d) / queries (H, nq, d).

    Returns one dict per method: index, recall (fraction of exact top-k found), search_s, build_s
    (build = the index construction that the first search triggers).
    """
    heads, n, d = keys.shape

    def timed_search(memory):
        start = time.perf_counter()
        first = memory.search(queries, k, normalize)  # builds the faiss index on first use
        built = time.perf_counter()
        again = memory.search(queries, k, normalize)
        return first, again, built - start, time.perf_counter() - built

    exact_mem = KVMemory(n, d, 1, heads=heads, dtype=keys.dtype).add(keys, keys[..., :1])
    exact, _, _, t_exact = timed_search(exact_mem)
    rows = [{"index": "exact (torch)", "recall": 1.0, "search_s": t_exact, "build_s": 0.0}]
    for kind in kinds:
        memory = KVMemory(n, d, 1, heads=heads, dtype=keys.dtype, backend="faiss", index=kind)
        memory.add(keys, keys[..., :1])
        _, again, t_first, t_again = timed_search(memory)
        rows.append({"index": f"faiss {kind}", "recall": recall_at_k(again, exact), "search_s": t_again,
                     "build_s": max(0.0, t_first - t_again)})
    return rows
