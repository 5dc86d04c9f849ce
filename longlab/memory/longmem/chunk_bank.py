"""ChunkBank: LongMem's chunked memory bank for ONE lane (Wang et al. 2023, arXiv 2306.07174, sec. 2.3).

Cached tokens are grouped into chunks of csz consecutive tokens (paper csz = 4). A chunk's retrieval key is the
mean of its csz token keys; a query retrieves the top K / csz chunks by inner product q . mean(k) ("token-to-chunk
retrieval") and they are expanded back into their K token keys and values, which the memory attention reads.

Built on `KVMemory`: one KVMemory entry is one chunk, key = the chunk's mean key (H, D), value = its csz token keys
and csz token values flattened (H, 2 csz D). So FIFO eviction (one chunk at a time, never a bulk flush),
exact search, doc ids, device moves and the safetensors format are KVMemory's. Every write must be whole chunks:
the window length must be a multiple of csz (a chunk never straddles two writes). One bank serves one lane;
the lanes themselves (one per batch row, cleared at document start) are `longlab.memory.lanes.Lanes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...checks import positive_int
from ..store import KVMemory


def check_chunked(name: str, length: int, chunk_size: int, fix: str) -> int:
    """Raise ValueError unless `length` is a multiple of `chunk_size`; returns length // chunk_size."""
    if length % chunk_size:
        raise ValueError(f"{name}={length} is not a multiple of chunk_size={chunk_size}; {fix}")
    return length // chunk_size


@dataclass
class TokenHits:
    """Retrieved tokens, every field leading with (H, N, K), K = chunks * csz, grouped chunk by chunk in
    descending chunk score: keys / values (H, N, K, D) detached; positions (token offset in the lane's document
    stream) and doc_ids int64; chunk_scores: q . mean(chunk keys) of the chunk each token came from."""

    keys: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor
    doc_ids: torch.Tensor
    chunk_scores: torch.Tensor
    chunk_slots: torch.Tensor  # (H, N, K / csz) KVMemory slot of each retrieved chunk

    def __repr__(self) -> str:
        h, n, k = self.positions.shape
        return f"TokenHits(heads={h}, queries={n}, tokens={k})"


class ChunkBank:
    """Chunked FIFO memory of one lane: `capacity` tokens per head (a multiple of chunk_size), heads x head_dim.

    add(keys, values (H, n, D), doc_ids=None) appends n / csz chunks; search(queries (H, N, D), k_tokens) returns
    TokenHits of the top k_tokens / csz chunks by q . mean(chunk keys)."""

    def __init__(self, capacity: int, head_dim: int, heads: int, chunk_size: int = 4, device=None, dtype=None):
        positive_int("capacity", capacity, "tokens per head")
        self.chunk_size = positive_int("chunk_size", chunk_size, "tokens per chunk")
        check_chunked("capacity", capacity, chunk_size, "give a memory size in whole chunks")
        self.head_dim, self.heads = positive_int("head_dim", head_dim), positive_int("heads", heads)
        self.chunks = KVMemory(capacity // chunk_size, head_dim, 2 * chunk_size * head_dim, heads=heads,
                               device=device, dtype=dtype)

    @classmethod
    def wrap(cls, chunks: KVMemory) -> ChunkBank:
        """A ChunkBank around an existing chunk KVMemory (csz read from its value width 2 csz D)."""
        bank = cls.__new__(cls)
        bank.chunk_size = chunks.value_dim // (2 * chunks.key_dim)
        bank.head_dim, bank.heads, bank.chunks = chunks.key_dim, chunks.heads, chunks
        return bank

    # ---- the interface a lane bank needs (see longlab.memory.lanes) -------------------------------------
    @property
    def capacity(self) -> int:
        return self.chunks.capacity * self.chunk_size

    @property
    def device(self) -> torch.device:
        return self.chunks.device

    @property
    def dtype(self) -> torch.dtype:
        return self.chunks.dtype

    def __len__(self) -> int:
        """Tokens held (per head)."""
        return len(self.chunks) * self.chunk_size

    def to(self, device=None, dtype=None) -> ChunkBank:
        self.chunks.to(device, dtype)
        return self

    def clear(self) -> ChunkBank:
        self.chunks.clear()
        return self

    def __repr__(self) -> str:
        return (f"ChunkBank({len(self)}/{self.capacity} tokens = {len(self.chunks)} chunks of {self.chunk_size} x "
                f"{self.heads} heads, head_dim={self.head_dim}, {self.dtype}, {self.device})")

    # ---- writing and reading --------------------------------------------------------------------------
    @torch.no_grad()
    def add(self, keys: torch.Tensor, values: torch.Tensor, doc_ids=None) -> ChunkBank:
        """Append keys, values (H, n, D), n a multiple of csz, as n / csz chunks (oldest chunks evicted first).
        Chunk positions are the token offsets of their first token since the bank was last cleared."""
        if keys.dim() != 3 or keys.shape != values.shape or keys.shape[0] != self.heads or \
                keys.shape[2] != self.head_dim:
            raise ValueError(f"keys and values must both be ({self.heads}, n, {self.head_dim}) [heads, n, head_dim], "
                             f"got {tuple(keys.shape)} and {tuple(values.shape)}")
        h, n, d = keys.shape
        c = check_chunked("tokens written", n, self.chunk_size, "write whole chunks (the window length must be a "
                          "multiple of chunk_size)")
        means = keys.reshape(h, c, self.chunk_size, d).mean(dim=2)
        payload = torch.cat([keys.reshape(h, c, self.chunk_size * d), values.reshape(h, c, self.chunk_size * d)], -1)
        first = self.chunks.total_added * self.chunk_size
        starts = torch.arange(first, first + n, self.chunk_size, device=self.device)
        self.chunks.add(means, payload, positions=starts, doc_ids=doc_ids)
        return self

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k_tokens: int) -> TokenHits:
        """Top k_tokens / csz chunks per query and head by q . mean(chunk keys), expanded to their tokens.

        queries (H, N, D). Fewer chunks held than asked: all of them. Returns TokenHits, K = chunks found * csz."""
        csz = self.chunk_size
        n_chunks = check_chunked("k_tokens", positive_int("k_tokens", k_tokens), csz,
                                 "retrieve whole chunks (topk must be a multiple of chunk_size)")
        found = self.chunks.search(queries, n_chunks)  # inner product with the chunk means
        h, n, c, _ = found.values.shape
        tokens = found.values.view(h, n, c, 2, csz, self.head_dim)
        keys, values = tokens[:, :, :, 0].reshape(h, n, c * csz, -1), tokens[:, :, :, 1].reshape(h, n, c * csz, -1)
        offsets = torch.arange(csz, device=self.device)
        positions = (found.positions[..., None] + offsets).reshape(h, n, c * csz)
        doc_ids = found.doc_ids[..., None].expand(-1, -1, -1, csz).reshape(h, n, c * csz)
        scores = found.scores[..., None].expand(-1, -1, -1, csz).reshape(h, n, c * csz)
        return TokenHits(keys, values, positions, doc_ids, scores, found.indices)

    # ---- persistence (safetensors through KVMemory) -----------------------------------------------------
    def save(self, path) -> Path:
        """Write the bank (its chunk KVMemory) atomically to a safetensors file."""
        self.chunks.save(path)
        return Path(path)

    @classmethod
    def load(cls, path, device=None) -> ChunkBank:
        return cls.wrap(KVMemory.load(path, device=device))
