"""Text windows with their retrieved neighbours, searched once and kept (searching 2M keys per chunk costs
~40 ms on a CPU, far more than a training step of the small retrieval block).

A RetroWindows holds P windows of N = L m bytes (+1 target byte) from named documents and, for each of the L
chunks of each window, the top-K database neighbours: searched with the chunk's own key (RETRO sec. 2.3:
chunk C_u retrieves with C_u itself, so tokens read only neighbours found with bytes at or before them),
excluding the window's own document unless `allow_same_doc` (the leakage measurement at evaluation; in
training, `RetroWindows.mixed` gives a share of the chunks such neighbours so the model sees neighbours
worth copying).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ...checks import positive_int
from ...io import atomic_write
from .cca import check_chunked


@dataclass
class RetroWindows:
    """tokens (P, N + 1) int64; doc_ids (P,) database doc ids; starts (P,) byte offsets; neighbours
    (P, L, K, 2m) uint8; lengths, nb_doc_ids, nb_offsets (P, L, K) int64; scores (P, L, K) float32."""

    tokens: torch.Tensor
    doc_ids: torch.Tensor
    starts: torch.Tensor
    neighbours: torch.Tensor
    lengths: torch.Tensor
    nb_doc_ids: torch.Tensor
    nb_offsets: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def max_k(self) -> int:
        return self.neighbours.shape[2]

    def __repr__(self) -> str:
        p, n_chunks, k, r = self.neighbours.shape
        return f"RetroWindows({p} windows of {self.tokens.shape[1] - 1} bytes, {n_chunks} chunks x {k} neighbours)"

    def subset(self, index) -> RetroWindows:
        """The windows at rows `index` (a slice, int list or tensor)."""
        return RetroWindows(*(getattr(self, f.name)[index] for f in fields(self)))

    def shuffled(self, seed: int = 0) -> RetroWindows:
        """The same windows with every chunk's neighbour list swapped for another (window, chunk)'s: the control
        that tells a gain from READING the neighbours apart from a gain from the added trainable block."""
        p, n_chunks, k, r = self.neighbours.shape
        perm = torch.randperm(p * n_chunks, generator=torch.Generator().manual_seed(seed))
        swap = lambda t: t.reshape(p * n_chunks, *t.shape[2:])[perm].reshape(t.shape)  # noqa: E731
        return RetroWindows(self.tokens, self.doc_ids, self.starts, swap(self.neighbours), swap(self.lengths),
                            swap(self.nb_doc_ids), swap(self.nb_offsets), swap(self.scores))

    def mixed(self, other: RetroWindows, fraction: float, seed: int = 0) -> RetroWindows:
        """These windows with a seeded random `fraction` of their (window, chunk) neighbour lists taken from
        `other`: the same windows searched another way (e.g. with the own file allowed, for training only)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction={fraction} must be in [0, 1] (the share of chunks whose neighbours come "
                             f"from `other`)")
        if not torch.equal(self.tokens, other.tokens) or self.neighbours.shape != other.neighbours.shape:
            raise ValueError(f"other must hold the same windows and k: tokens equal and neighbours "
                             f"{tuple(self.neighbours.shape)}, got {tuple(other.neighbours.shape)}")
        p, n_chunks = self.neighbours.shape[:2]
        take = torch.rand(p, n_chunks, generator=torch.Generator().manual_seed(seed)) < fraction
        pick = lambda a, b: torch.where(take.view(p, n_chunks, *[1] * (a.dim() - 2)), b, a)  # noqa: E731
        return RetroWindows(self.tokens, self.doc_ids, self.starts,
                            *(pick(getattr(self, f), getattr(other, f)) for f in
                              ("neighbours", "lengths", "nb_doc_ids", "nb_offsets", "scores")))

    def own_file_share(self) -> float:
        """Share of all neighbours that come from their window's own file."""
        return (self.nb_doc_ids == self.doc_ids[:, None, None]).float().mean().item()

    def batch(self, index, k: int):
        """x, y (b, N), neighbours (b, L, k, 2m), lengths (b, L, k) for window rows `index`, first k neighbours."""
        from .model import check_neighbour_count

        check_neighbour_count(k, self.max_k)
        t = self.tokens[index]
        return t[:, :-1], t[:, 1:], self.neighbours[index, :, :k], self.lengths[index, :, :k]

    def save(self, path, meta: dict | None = None) -> Path:
        tensors = {f.name: getattr(self, f.name).contiguous() for f in fields(self)}
        info = {"format": "longlab.RetroWindows", "meta": json.dumps(meta or {})}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=info))

    @classmethod
    def load(cls, path) -> RetroWindows:
        try:
            tensors = load_file(str(path))
        except Exception as err:  # safetensors raises several types for truncated files
            raise ValueError(f"{path} is not a readable RetroWindows file (truncated or corrupt?): {err}") from err
        missing = {f.name for f in fields(cls)} - set(tensors)
        if missing:
            raise ValueError(f"{path} lacks tensors {sorted(missing)}; regenerate it")
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})


def window_starts(lengths: list[int], count: int | None, context: int, seed: int = 0, max_bytes: int | None = None,
                  align: int = 1):
    """(document index, start) pairs: `count` seeded random windows (documents weighted by length), their starts
    rounded down to a multiple of `align` (the chunk size puts window chunks on the database's chunk grid), or,
    with count=None, consecutive windows over the first `max_bytes` bytes of every document."""
    positive_int("align", align, "bytes")
    if count is None:
        return [(d, s) for d, n in enumerate(lengths)
                for s in range(0, min(n, max_bytes or n) - context, context)]
    gen = torch.Generator().manual_seed(seed)
    usable = torch.tensor([max(0, n - context - 1) for n in lengths], dtype=torch.float)
    docs = torch.multinomial(usable, positive_int("count", count), replacement=True, generator=gen)
    return [(int(d), int(torch.randint(0, int(usable[d]), (1,), generator=gen)) // align * align) for d in docs]


def retrieve_windows(db, encoder, documents, picks, context: int, k: int, allow_same_doc: bool = False,
                     batch: int = 64, progress: bool = True) -> RetroWindows:
    """Cut windows (document index, start) from `documents` (objects with .name and .tokens()) and search the
    top-k neighbours of every chunk. Document names must be in the database (same-document exclusion)."""
    m = db.chunk_size
    n_chunks = check_chunked(context, m, "context")
    db.check_encoder(encoder.identity)
    toks = [d.tokens() for d in documents]
    ids = [db.doc_id(d.name) for d in documents]
    tokens = torch.stack([toks[d][s : s + context + 1] for d, s in picks])
    doc_ids = torch.tensor([ids[d] for d, _ in picks])
    chunks = tokens[:, :context].reshape(-1, m)
    exclude = None if allow_same_doc else doc_ids.repeat_interleave(n_chunks)
    parts = []
    for s in tqdm(range(0, chunks.shape[0], batch), desc="retrieve", unit="batch", disable=not progress):
        keys = encoder.encode(chunks[s : s + batch])
        parts.append(db.search(keys, k, None if exclude is None else exclude[s : s + batch]))
    shape = (len(picks), n_chunks, k)
    cat = lambda name: torch.cat([getattr(p, name) for p in parts]).reshape(*shape, -1).squeeze(-1)  # noqa: E731
    return RetroWindows(tokens, doc_ids, torch.tensor([s for _, s in picks]), cat("tokens"), cat("lengths"),
                        cat("doc_ids"), cat("offsets"), cat("scores").float())


def exact_continuation_windows(windows: RetroWindows, chunk_size: int) -> RetroWindows:
    """The same windows with ONE neighbour per chunk u: the window's own bytes [C_u, C_{u+1}] (the second part
    is cut at the window's end). The copy check: a model that reads its neighbours must predict chunk u + 1
    better from this than from nothing; one that ignores them gains nothing."""
    m = positive_int("chunk_size", chunk_size, "bytes")
    p, width = windows.tokens.shape
    n_chunks = check_chunked(width - 1, m, "window length")
    padded = torch.cat([windows.tokens, windows.tokens.new_zeros(p, 2 * m)], 1)
    neighbours = torch.stack([padded[:, u * m : u * m + 2 * m] for u in range(n_chunks)], 1)[:, :, None]
    lengths = (width - torch.arange(n_chunks) * m).clamp(max=2 * m).expand(p, n_chunks)[:, :, None]
    own = windows.doc_ids[:, None, None].expand(p, n_chunks, 1)
    offsets = (windows.starts[:, None] + torch.arange(n_chunks) * m)[:, :, None]
    return RetroWindows(windows.tokens, windows.doc_ids, windows.starts, neighbours.to(torch.uint8),
                        lengths.contiguous(), own.contiguous(), offsets, torch.ones(p, n_chunks, 1))
