"""Optional faiss backend for KVMemory (CPU): "flat" exact, "hnsw" / "ivf" approximate inner-product indexes.

`FaissIndex` takes tensors, never the store: `KVMemory` hands it the keys of its occupied slots, so faiss ids
are memory slot indices; the index is rebuilt lazily on the first search after the memory marks it dirty.
(Exact-vs-faiss comparisons over a KVMemory live in `longlab.memory.recall`.)
Install with `pip install 'longlab[faiss]'` (or `pip install faiss-cpu`).
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


def faiss_with_torch_threads():
    """`import_faiss()` with faiss's own OpenMP pool set to torch's thread count, so that a timing against torch
    compares the same cores (faiss otherwise uses every core)."""
    faiss = import_faiss()
    faiss.omp_set_num_threads(torch.get_num_threads())
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

    def __init__(self, kind: str, key_dim: int, heads: int, nprobe: int = 8):
        import_faiss()
        if kind not in INDEX_KINDS:
            raise ValueError(f"faiss index must be one of {INDEX_KINDS}, got {kind!r}")
        self.kind, self.key_dim, self.heads = kind, key_dim, heads
        self.nprobe = nprobe  # "ivf": inverted lists scanned per query (read at every search: no rebuild)
        self._indexes: dict[bool, list] = {}

    def mark_dirty(self) -> None:
        self._indexes.clear()

    def _for(self, keys: torch.Tensor, normalize: bool) -> list:
        if normalize not in self._indexes:
            keys = keys.float()
            if normalize:
                keys = torch.nn.functional.normalize(keys, dim=-1)
            self._indexes[normalize] = [build_index(self.kind, keys[h].cpu().numpy()) for h in range(self.heads)]
        return self._indexes[normalize]

    def search(self, keys: torch.Tensor, queries: torch.Tensor, k: int, normalize: bool):
        """(scores float32, slot indices int64) on the CPU, each (heads, nq, min(k, n)); keys (heads, n, key_dim)
        are the stored keys the index is built from (used only when it must be rebuilt), queries
        (heads, nq, key_dim). Missing neighbours of approximate indexes come back as slot 0 with score -inf."""
        k = min(k, keys.shape[1])
        if normalize:
            queries = torch.nn.functional.normalize(queries, dim=-1)
        scores, index = [], []
        for h, idx in enumerate(self._for(keys, normalize)):
            if self.kind == "ivf":
                idx.nprobe = min(self.nprobe, idx.nlist)
            d, i = idx.search(np.ascontiguousarray(queries[h].float().cpu().numpy()), k)
            scores.append(torch.from_numpy(d))
            index.append(torch.from_numpy(i))
        scores, index = torch.stack(scores), torch.stack(index)
        missing = index < 0  # approximate indexes may return -1 for missing neighbours
        return scores.masked_fill(missing, float("-inf")), index.clamp_min(0)
