"""RETRO's database entries: a corpus cut into chunks of m bytes, each stored with its continuation.

RETRO (Borgeaud et al. 2021, arXiv 2112.04426, sec. 2.2-2.3): the retrieval database is a key-value
store whose key is a frozen embedding of a chunk N and whose value is [N, F], the chunk followed by its
continuation F in the source document (2m tokens together). Here tokens are bytes (TinyLM is byte-level).

The corpus is every .py file of the installed Python standard library (tests included, installed packages
excluded), one document per file, sorted by path so document ids are stable for one Python install.
A document of L bytes gives floor(L / m) chunks; the continuation of the last chunks may be shorter than
m bytes (or empty), so each entry stores its valid length: padding is marked by length, never by a pad
byte (every byte value 0..255 is real text in a byte-level model).
"""
from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from ...checks import positive_int

SKIP_FOLDERS = ("site-packages", "__pycache__")


def stdlib_python_files(root=None) -> list[tuple[str, Path]]:
    """(name relative to the stdlib folder, path) of every .py file of the standard library, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a folder; leave it None for the standard library")
    files = []
    for path in root.rglob("*.py"):
        name = path.relative_to(root).as_posix()
        if any(part in SKIP_FOLDERS for part in name.split("/")[:-1]) or not path.is_file():
            continue
        files.append((name, path))
    return sorted(files)


@dataclass
class ChunkEntries:
    """Database entries of some documents (n entries, chunk size m).

    neighbours (n, 2m) uint8: chunk bytes then continuation bytes (RETRO's [N, F]), zero beyond `lengths`;
    lengths (n,) int64: valid bytes in `neighbours` (m <= length <= 2m); doc_ids (n,) int64; offsets (n,) int64:
    byte offset of the chunk in its document.
    """

    neighbours: torch.Tensor
    lengths: torch.Tensor
    doc_ids: torch.Tensor
    offsets: torch.Tensor

    @property
    def chunk_size(self) -> int:
        return self.neighbours.shape[1] // 2

    @property
    def chunks(self) -> torch.Tensor:
        """(n, m) uint8: the chunk bytes alone (what the key is computed from)."""
        return self.neighbours[:, : self.chunk_size]

    def __len__(self) -> int:
        return self.neighbours.shape[0]

    def __repr__(self) -> str:
        return f"ChunkEntries({len(self)} chunks of m={self.chunk_size} bytes + continuation)"

    @staticmethod
    def cat(parts: list[ChunkEntries], chunk_size: int) -> ChunkEntries:
        if not parts:
            empty = torch.zeros(0, dtype=torch.long)
            return ChunkEntries(torch.zeros(0, 2 * chunk_size, dtype=torch.uint8), empty, empty, empty)
        return ChunkEntries(*(torch.cat([getattr(p, f) for p in parts]) for f in
                              ("neighbours", "lengths", "doc_ids", "offsets")))


def chunk_document(data: bytes, chunk_size: int, doc_id: int) -> ChunkEntries:
    """Cut one document's bytes into floor(len / m) chunks of m bytes, each with its continuation."""
    m = positive_int("chunk_size", chunk_size, "bytes")
    n = len(data) // m
    padded = torch.zeros(n * m + 2 * m, dtype=torch.uint8)
    raw = torch.frombuffer(bytearray(data[: (n + 1) * m]), dtype=torch.uint8) if data else padded[:0]
    padded[: raw.numel()] = raw
    offsets = torch.arange(n, dtype=torch.long) * m
    neighbours = padded.unfold(0, 2 * m, m)[:n].clone()
    lengths = (len(data) - offsets).clamp(max=2 * m)
    return ChunkEntries(neighbours, lengths, torch.full((n,), doc_id, dtype=torch.long), offsets)


def count_chunks(sizes: list[int], chunk_size: int) -> int:
    """Entries a corpus of documents with these byte sizes gives at chunk size m."""
    return sum(size // chunk_size for size in sizes)
