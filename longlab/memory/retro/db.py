"""RetroDatabase: RETRO's frozen key-value store of chunks, searched through KVMemory (exact, or faiss).

Keys are `ChunkEncoder` keys (unit length, so inner product = cosine); values are the entries' [chunk,
continuation] bytes. `search` returns each query's k nearest entries from OTHER documents (RETRO sec. 2.3:
neighbours from the training sequence's own document are excluded, otherwise the model learns to copy the
future of its own text; pass exclude_docs=None to measure that leakage on purpose).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...checks import positive_int
from ..store import KVMemory
from .chunks import ChunkEntries
from .encoder import check_same_encoder
from .shards import read_manifest, read_shard


@dataclass
class Neighbours:
    """k neighbours per query, best first. Fields lead with (q, k): scores (cosine), indices (entry ids),
    doc_ids, offsets, lengths (valid bytes of `tokens`), tokens (q, k, 2m) uint8 [chunk, continuation]."""

    scores: torch.Tensor
    indices: torch.Tensor
    doc_ids: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    tokens: torch.Tensor

    def __repr__(self) -> str:
        q, k = self.indices.shape
        return f"Neighbours(queries={q}, k={k}, bytes per neighbour={self.tokens.shape[-1]})"


class RetroDatabase:
    """Entries + a KVMemory of their keys. Load with `RetroDatabase.load(folder)` (built by `build_database`)."""

    def __init__(self, keys: torch.Tensor, entries: ChunkEntries, identity: dict, documents: list[str] | None = None,
                 backend: str = "torch", index: str = "flat"):
        n, dim = keys.shape
        positive_int("database entries", n)
        if len(entries) != n:
            raise ValueError(f"keys have {n} rows but entries have {len(entries)}; they must match")
        self.entries, self.identity, self.chunk_size = entries, dict(identity), entries.chunk_size
        self.documents = documents or [str(d) for d in range(int(entries.doc_ids.max()) + 1)]
        self.memory = KVMemory(n, dim, 1, backend=backend, index=index, dtype=torch.float32)
        self.memory.add(keys, keys.new_zeros(n, 1), positions=entries.offsets, doc_ids=entries.doc_ids)

    @classmethod
    def load(cls, folder, backend: str = "torch", index: str = "flat", identity: dict | None = None,
             progress: bool = False) -> RetroDatabase:
        """Read a database folder; `identity` (an encoder's) is checked against the stored one when given."""
        from tqdm.auto import tqdm

        manifest = read_manifest(folder)
        if identity is not None:
            check_same_encoder(manifest["encoder"], identity, f"RETRO database {folder}")
        keys, parts = [], []
        for shard in tqdm(manifest["shards"], desc="load retro db", unit="shard", disable=not progress):
            k, e = read_shard(Path(folder) / shard["file"], manifest["encoder"], manifest["chunk_size"],
                              tuple(shard["doc_range"]))
            keys.append(k)
            parts.append(e)
        return cls(torch.cat(keys), ChunkEntries.cat(parts, manifest["chunk_size"]), manifest["encoder"],
                   manifest["documents"], backend=backend, index=index)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (f"RetroDatabase({len(self):,} chunks of m={self.chunk_size} bytes from {len(self.documents)} "
                f"documents, key dim {self.memory.key_dim}, backend={self.memory.backend!r}, "
                f"encoder {self.identity.get('name')}@{self.identity.get('weights_sha256')})")

    def doc_id(self, name: str) -> int:
        """Document id of a file name as stored (e.g. "argparse.py"); ValueError when it is not in the database."""
        try:
            return self.documents.index(name)
        except ValueError:
            raise ValueError(f"document {name!r} is not in this database ({len(self.documents)} documents)") from None

    def check_encoder(self, identity: dict) -> None:
        check_same_encoder(self.identity, identity, "this RETRO database")

    def search(self, keys: torch.Tensor, k: int, exclude_docs=None, identity: dict | None = None) -> Neighbours:
        """The k entries of highest cosine with each query key, skipping entries of the query's document.

        keys (q, d) query keys from the SAME encoder (pass its `identity` to have that checked); exclude_docs
        (q,) int doc id per query, or None to allow every document. Exact with the torch backend: the
        result equals a brute-force top-k over the entries of other documents (over-fetch, then widen the
        search for the queries that lost too many hits to exclusion).
        """
        if identity is not None:
            self.check_encoder(identity)
        positive_int("k", k)
        if k > len(self):
            raise ValueError(f"k={k} neighbours asked but the database holds only {len(self)} chunks; "
                             f"lower k or build a larger database")
        q = keys.shape[0]
        exclude = None if exclude_docs is None else torch.as_tensor(exclude_docs, dtype=torch.long).expand(q)
        index = torch.empty(q, k, dtype=torch.long)
        scores = torch.empty(q, k)
        todo, fetch = torch.arange(q), min(len(self), 2 * k + 16)
        while todo.numel():
            found = self.memory.search(keys[todo], fetch)
            got_s, got_i = found.scores[0], found.indices[0]
            keep = torch.ones_like(got_i, dtype=torch.bool) if exclude is None else \
                found.doc_ids[0] != exclude[todo, None]
            enough = keep.sum(1) >= k
            if fetch == len(self) and not enough.all():
                bad = todo[~enough][0].item()
                raise ValueError(f"query {bad} has fewer than k={k} neighbours outside its own document "
                                 f"(doc {exclude[bad].item()}); lower k")
            order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :k]  # first k kept hits
            done = todo[enough]
            index[done] = got_i.gather(1, order)[enough]
            scores[done] = got_s.gather(1, order)[enough]
            todo, fetch = todo[~enough], min(len(self), 4 * fetch)
        return self.neighbours(index, scores)

    def neighbours(self, index: torch.Tensor, scores: torch.Tensor) -> Neighbours:
        e = self.entries
        return Neighbours(scores, index, e.doc_ids[index], e.offsets[index], e.lengths[index], e.neighbours[index])
