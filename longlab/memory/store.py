"""KVMemory: a per-head FIFO ring buffer of (key, value, position, doc id) with exact top-k search.

The external memory of the Memorizing Transformer (Wu et al. 2022, arXiv 2203.08913, sec. 3): past keys and
values are stored without gradient, the oldest are evicted first, and queries retrieve their top-k keys.
Shared by the kNN layer, Focused Transformer, LongMem and RETRO code.

Layout: slot s of every buffer holds one entry for all heads. The ring fills slots 0, 1, ... in order, so
while not full the occupied slots are exactly 0..count-1; once full, `cursor` points at the oldest entry.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .faiss_backend import FaissIndex
from .persist import META_INTS, read_memory_into, save_memory
from .screened_search import screen_worthwhile, screened_topk
from .search import exact_topk

BACKENDS = ("torch", "faiss")


@dataclass
class SearchResult:
    """Top-k retrieval result; every field has leading shape (heads, nq, k), sorted by descending score.

    scores: similarity (inner product, or cosine when searched with normalize=True);
    indices: memory slot of each hit; positions / doc_ids: what was stored with it (int64);
    keys (heads, nq, k, key_dim) and values (heads, nq, k, value_dim): the stored vectors, detached.
    """

    scores: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    doc_ids: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor

    def __repr__(self) -> str:
        return f"SearchResult(heads={self.scores.shape[0]}, queries={self.scores.shape[1]}, k={self.scores.shape[2]})"


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_finite(name: str, t: torch.Tensor) -> None:
    if t.numel() and not all(torch.isfinite(x) for x in torch.aminmax(t)):  # NaN/inf propagate to min/max
        raise ValueError(f"{name} contains NaN or inf; memory entries must be finite")

class KVMemory:
    """FIFO memory of (key, value, position, doc_id) per head, exact (or faiss) top-k search.

    capacity: entries kept per head (oldest evicted first); key_dim, value_dim (default key_dim);
    heads: independent heads sharing slots; backend: "torch" (exact, chunked, any device) or "faiss"
    (CPU; `index` = "flat" exact, "hnsw" or "ivf" approximate, see `longlab.memory.faiss_backend`;
    `nprobe`: lists an "ivf" search scans, also settable later as `memory.nprobe`: recall against speed).
    Stored tensors never carry gradient (keys/values are detached on add).
    """

    def __init__(self, capacity: int, key_dim: int, value_dim: int | None = None, *, heads: int = 1,
                 device=None, dtype=None, backend: str = "torch", index: str = "flat", chunk: int | None = None,
                 nprobe: int = 8):
        _check_int("capacity", capacity)
        _check_int("key_dim", key_dim)
        value_dim = key_dim if value_dim is None else _check_int("value_dim", value_dim)
        _check_int("heads", heads)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        dtype = dtype or torch.get_default_dtype()
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.capacity, self.key_dim, self.value_dim, self.heads = capacity, key_dim, value_dim, heads
        self.backend, self.index_kind, self.chunk = backend, index, chunk
        self.keys = torch.zeros(heads, capacity, key_dim, device=device, dtype=dtype)
        self.values = torch.zeros(heads, capacity, value_dim, device=device, dtype=dtype)
        self.key_norms = torch.zeros(heads, capacity, device=device, dtype=dtype)
        self.positions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.doc_ids = torch.zeros(capacity, dtype=torch.long, device=device)
        self.cursor = 0  # next slot to write (= oldest slot once full)
        self.count = 0  # occupied slots
        self.total_added = 0  # entries ever added (default positions continue from here)
        self._faiss = FaissIndex(index, key_dim, heads, _check_int("nprobe", nprobe)) if backend == "faiss" else None

    # ---- state -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.keys.device

    @property
    def dtype(self) -> torch.dtype:
        return self.keys.dtype

    def __len__(self) -> int:
        return self.count

    @property
    def nprobe(self) -> int | None:
        """Inverted lists an "ivf" faiss search scans (None for other backends); set it to trade recall for speed."""
        return self._faiss.nprobe if self._faiss is not None else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._faiss is None:
            raise ValueError(f"nprobe applies to backend='faiss', index='ivf'; this memory has "
                             f"backend={self.backend!r}")
        self._faiss.nprobe = _check_int("nprobe", value)

    @torch.no_grad()
    def to(self, device=None, dtype=None) -> KVMemory:
        """Move the buffers (in place, contents kept) to `device` / floating `dtype`; returns self."""
        for name in ("keys", "values", "key_norms"):
            setattr(self, name, getattr(self, name).to(device=device, dtype=dtype))
        for name in ("positions", "doc_ids"):
            setattr(self, name, getattr(self, name).to(device=device))
        return self

    def __repr__(self) -> str:
        docs = self.doc_ids[: self.count].unique().numel() if self.count else 0
        return (f"KVMemory({self.count}/{self.capacity} entries x {self.heads} heads, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}, docs={docs}, backend={self.backend!r}, {self.dtype}, {self.device})")

    def order(self) -> torch.Tensor:
        """Occupied slot indices from oldest to newest (LongTensor of length len(self))."""
        slots = torch.arange(self.count, device=self.device)
        if self.count == self.capacity:
            slots = (slots + self.cursor) % self.capacity
        return slots

    # ---- writing -----------------------------------------------------------------------------------
    def _as_heads(self, name: str, t: torch.Tensor, dim: int, dim_name: str, check_finite: bool = True
                  ) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (heads, n, {dim_name}), got {type(t).__name__}")
        if t.dim() == 2:
            if self.heads != 1:
                raise ValueError(f"{name} has shape {tuple(t.shape)} but the memory has {self.heads} heads; "
                                 f"pass ({self.heads}, n, {dim_name})")
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] != self.heads or t.shape[2] != dim:
            raise ValueError(f"{name} must have shape ({self.heads}, n, {dim}) [heads, n, {dim_name}], "
                             f"got {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if check_finite:
            _check_finite(name, t)
        return t.detach().to(self.device, self.dtype)

    def _as_index(self, name: str, t, n: int, default: torch.Tensor) -> torch.Tensor:
        if t is None:
            return default
        t = torch.as_tensor(t, device=self.device)
        if t.dim() == 0:
            t = t.expand(n)
        if t.shape != (n,) or t.dtype.is_floating_point:
            raise ValueError(f"{name} must be an integer tensor of shape ({n},) or a scalar, got "
                             f"{tuple(t.shape)} {t.dtype}")
        return t.long()

    @torch.no_grad()
    def add(self, keys: torch.Tensor, values: torch.Tensor, positions=None, doc_ids=None) -> KVMemory:
        """Append n entries; evict the oldest when full. Returns self.

        keys (heads, n, key_dim) or (n, key_dim) when heads == 1; values (heads, n, value_dim) likewise;
        positions (n,) ints (default: running count of entries ever added); doc_ids (n,) or scalar (default 0).
        Adding more than `capacity` entries at once keeps only the newest `capacity` of them.
        """
        keys = self._as_heads("keys", keys, self.key_dim, "key_dim", check_finite=False)
        values = self._as_heads("values", values, self.value_dim, "value_dim")
        # The norms are needed anyway, and a NaN or inf key makes its norm non-finite: checking the (heads, n)
        # norms instead of every key element saves a full pass over the keys (adding is memory-bound).
        norms = torch.linalg.vector_norm(keys, dim=-1)
        if norms.numel() and not all(torch.isfinite(x) for x in torch.aminmax(norms)):
            _check_finite("keys", keys)  # names NaN/inf; finite keys whose squares overflow pass it
        n = keys.shape[1]
        if values.shape[1] != n:
            raise ValueError(f"keys have n={n} entries but values have {values.shape[1]}; they must match")
        default_pos = torch.arange(self.total_added, self.total_added + n, device=self.device)
        positions = self._as_index("positions", positions, n, default_pos)
        doc_ids = self._as_index("doc_ids", doc_ids, n, torch.zeros(n, dtype=torch.long, device=self.device))
        self.total_added += n
        if n > self.capacity:  # only the newest `capacity` survive
            keys, values, norms = keys[:, -self.capacity:], values[:, -self.capacity:], norms[:, -self.capacity:]
            positions, doc_ids = positions[-self.capacity:], doc_ids[-self.capacity:]
            n = self.capacity
        # The ring's slots for these n entries are at most two contiguous runs: plain slice copies (several
        # times faster than scattering through an index tensor).
        first = min(n, self.capacity - self.cursor)
        runs = ((slice(0, first), slice(self.cursor, self.cursor + first)), (slice(first, n), slice(0, n - first)))
        for src, dst in runs:
            if src.start == src.stop:
                continue
            self.keys[:, dst] = keys[:, src]
            self.values[:, dst] = values[:, src]
            self.key_norms[:, dst] = norms[:, src]
            self.positions[dst] = positions[src]
            self.doc_ids[dst] = doc_ids[src]
        self.cursor = (self.cursor + n) % self.capacity
        self.count = min(self.capacity, self.count + n)
        if self._faiss is not None:
            self._faiss.mark_dirty()
        return self

    @torch.no_grad()
    def clear(self, doc_id: int | None = None) -> KVMemory:
        """Empty the memory (doc_id=None; default positions restart at 0), or drop only the entries of
        document `doc_id`, keeping the others in FIFO order."""
        if doc_id is None:
            self.cursor = self.count = self.total_added = 0
        else:
            keep = self.order()
            keep = keep[self.doc_ids[keep] != int(doc_id)]
            m = keep.numel()
            for buf in (self.keys, self.values, self.key_norms):
                buf[:, :m] = buf[:, keep].clone()
            for buf in (self.positions, self.doc_ids):
                buf[:m] = buf[keep].clone()
            self.count, self.cursor = m, m % self.capacity
        if self._faiss is not None:
            self._faiss.mark_dirty()
        return self

    # ---- reading -----------------------------------------------------------------------------------
    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int, normalize: bool = False, exact: bool = False) -> SearchResult:
        """Top-k stored entries per query and head, by inner product (cosine when normalize=True).

        queries (heads, nq, key_dim) or (nq, key_dim) when heads == 1. k larger than len(self) returns the
        len(self) entries that exist (an empty memory gives k = 0 results, not an error).
        Returns a SearchResult whose fields lead with (heads, nq, min(k, len(self))).
        exact=True: the exact torch search even when the memory has a faiss backend (to measure recall).
        """
        queries = self._as_heads("queries", queries, self.key_dim, "key_dim")
        _check_int("k", k)
        n = self.count
        if self._faiss is not None and n and not exact:
            scores, index = self._faiss.search(self.keys[:, :n], queries, k, normalize)
            scores, index = scores.to(self.device, self.dtype), index.to(self.device)
        else:
            q = torch.nn.functional.normalize(queries, dim=-1) if normalize else queries
            scale = 1.0 / self.key_norms[:, :n].clamp_min(1e-12) if normalize else None
            if screen_worthwhile(q, self.keys[:, :n], k, scale, self.chunk):  # CPUs with hardware bfloat16
                scores, index = screened_topk(q, self.keys[:, :n], k, chunk=self.chunk, key_norms=self.key_norms[:, :n])
            else:
                scores, index = exact_topk(q, self.keys[:, :n], k, key_scale=scale, chunk=self.chunk)
        return self.gather(scores, index)

    def gather(self, scores: torch.Tensor, index: torch.Tensor) -> SearchResult:
        """Build a SearchResult from slot indices (heads, nq, k) and their scores."""
        heads, nq, k = index.shape
        flat = index.reshape(heads, nq * k)
        keys = self.keys.gather(1, flat[..., None].expand(-1, -1, self.key_dim))
        values = self.values.gather(1, flat[..., None].expand(-1, -1, self.value_dim))
        keys, values = keys.view(heads, nq, k, self.key_dim), values.view(heads, nq, k, self.value_dim)
        return SearchResult(scores, index, self.positions[index], self.doc_ids[index], keys, values)

    # ---- persistence (safetensors, never pickle) ---------------------------------------------------
    def save(self, path) -> None:
        """Write the memory to a safetensors file atomically (temp file + rename). See `persist.save_memory`."""
        n = self.count
        tensors = {"keys": self.keys[:, :n], "values": self.values[:, :n], "positions": self.positions[:n],
                   "doc_ids": self.doc_ids[:n]}
        meta = {name: getattr(self, name) for name in META_INTS}
        save_memory(path, tensors, {**meta, "dtype": self.dtype, "backend": self.backend, "index": self.index_kind})

    @classmethod
    def load(cls, path, device=None) -> KVMemory:
        """Read a memory written by `save`, streaming slices from the file straight into the new buffers (peak
        memory about one memory, not two); raises ValueError naming the file if it is truncated or corrupt."""
        built = {}

        def make_buffers(meta):
            n = meta["count"]
            memory = cls(meta["capacity"], meta["key_dim"], meta["value_dim"], heads=meta["heads"], device=device,
                         dtype=meta["dtype"], backend=meta["backend"], index=meta["index"])
            built["memory"] = memory
            return {"keys": memory.keys[:, :n], "values": memory.values[:, :n], "positions": memory.positions[:n],
                    "doc_ids": memory.doc_ids[:n]}

        meta = read_memory_into(path, make_buffers)
        memory, n = built["memory"], meta["count"]
        memory.key_norms[:, :n] = torch.linalg.vector_norm(memory.keys[:, :n], dim=-1)
        memory.cursor, memory.count, memory.total_added = meta["cursor"], n, meta["total_added"]
        if memory._faiss is not None:
            memory._faiss.mark_dirty()
        return memory
