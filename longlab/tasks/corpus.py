"""A real English corpus every Python installation ships: the documentation topics in `pydoc_data`.

`pydoc_data.topics.topics` maps ~80 help topics ("assert", "compound", "specialnames", ...) to their text
(~465 KB in CPython 3.11; the longest topic is ~62 KB, long enough for memory experiments). Each topic is one
document. Text is byte-level (UTF-8), matching TinyLM's vocabulary of 256.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Document:
    name: str
    text: str

    def tokens(self) -> torch.Tensor:
        return encode(self.text)

    def __repr__(self) -> str:
        return f"Document({self.name!r}, {len(self.text.encode('utf-8'))} bytes)"


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of `text` as an int64 tensor (N,)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens) -> str:
    """Bytes back to text (invalid UTF-8 shown as the replacement character)."""
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


def load_documents(min_bytes: int = 0) -> list[Document]:
    """All pydoc topics as Documents, sorted by name; keep those with at least `min_bytes` bytes."""
    from pydoc_data.topics import topics

    docs = [Document(name, text) for name, text in sorted(topics.items())]
    return [d for d in docs if len(d.text.encode("utf-8")) >= min_bytes]


def split_documents(docs: list[Document] | None = None, val_every: int = 8) -> tuple[list[Document], list[Document]]:
    """Deterministic train/validation split: rank documents by length (longest first) and send every
    `val_every`-th one (ranks 0, val_every, ...) to validation, so validation holds long and short documents
    (including the longest, for memory experiments)."""
    if not isinstance(val_every, int) or val_every < 2:
        raise ValueError(f"val_every must be an int >= 2, got {val_every!r}")
    docs = load_documents() if docs is None else docs
    ranked = sorted(docs, key=lambda d: (-len(d.text), d.name))
    val = [d for i, d in enumerate(ranked) if i % val_every == 0]
    train = [d for i, d in enumerate(ranked) if i % val_every != 0]
    return train, val


def unigram_loss(train: list[Document], val: list[Document]) -> float:
    """Cross-entropy (nats/byte) of the validation bytes under train byte frequencies (add-one smoothed):
    the loss a model that ignores context reaches, the bar a language model must clearly beat."""
    counts = Counter(b for d in train for b in d.text.encode("utf-8"))
    total = sum(counts.values()) + 256
    val_bytes = [b for d in val for b in d.text.encode("utf-8")]
    return -sum(math.log((counts[b] + 1) / total) for b in val_bytes) / len(val_bytes)
