"""Optional faiss backend for KVMemory (CPU): "flat" exact, "hnsw" / "ivf" approximate, and a recall report.

Indexes are rebuilt lazily from the memory's buffers on the first search after a change, so faiss ids are
memory slot indices. Install with `pip install 'longlab[faiss]'` (or `pip install faiss-cpu`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

INDEX_KINDS = ("flat", "hnsw", "ivf")


def import_faiss():
    """Return the faiss module, or raise ImportError saying which extra to install."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError("backend='faiss' needs the faiss-cpu package: pip install 'longlab[faiss]' "
                          "(or pip install faiss-cpu); backend='torch' needs nothing extra") from err
    return faiss


def build_index(kind: str, vectors: np.ndarray, hnsw_m: int = 32, nprobe: int = 8):
    """A faiss inner-product index of `kind` holding `vectors` (n, d) float32, ids 0..n-1."""
    faiss = import_faiss()
    n, d = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    elif kind == "ivf":
        nlist = max(1, min(int(math.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"faiss index must be one of {INDEX_KINDS}, got {kind!r}")
    index.add(vectors)
    return index


class FaissIndex:
    """One faiss index per head over a KVMemory's occupied slots; rebuilt when the memory changed."""

    def __init__(self, kind: str, key_dim: int, heads: int):
        import_faiss()
        if kind not in INDEX_KINDS:
            raise ValueError(f"faiss index must be one of {INDEX_KINDS}, got {kind!r}")
        self.kind, self.key_dim, self.heads = kind, key_dim, heads
        self._indexes: dict[bool, list] = {}

    def mark_dirty(self) -> None:
        self._indexes.clear()

    def _for(self, memory, normalize: bool) -> list:
        if normalize not in self._indexes:
            keys = memory.keys[:, : memory.count].float()
            if normalize:
                keys = torch.nn.functional.normalize(keys, dim=-1)
            self._indexes[normalize] = [build_index(self.kind, keys[h].cpu().numpy()) for h in range(self.heads)]
        return self._indexes[normalize]

    def search(self, memory, queries: torch.Tensor, k: int, normalize: bool):
        """(scores, slot indices), each (heads, nq, min(k, count)); queries (heads, nq, key_dim)."""
        k = min(k, memory.count)
        if normalize:
            queries = torch.nn.functional.normalize(queries, dim=-1)
        scores, index = [], []
        for h, idx in enumerate(self._for(memory, normalize)):
            d, i = idx.search(np.ascontiguousarray(queries[h].float().cpu().numpy()), k)
            scores.append(torch.from_numpy(d))
            index.append(torch.from_numpy(i))
        scores = torch.stack(scores).to(memory.device, memory.dtype)
        index = torch.stack(index).to(memory.device)
        # approximate indexes may return -1 for missing neighbours; point them at slot 0 with -inf score
        missing = index < 0
        return scores.masked_fill(missing, float("-inf")), index.clamp_min(0)


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
    import time

    from .store import KVMemory

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
