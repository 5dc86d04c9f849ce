"""Loss as a function of memory size (Memorizing Transformer, arXiv 2203.08913, sec. 4: perplexity falls as
the kNN memory grows) and per-token "where memory helped" losses.

One document is read window after window; every memory size is one batch lane of the same text, so all sizes
are evaluated in a single pass with identical local context, and differences come from memory alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .lanes import memory_lanes


@dataclass
class MemoryCurve:
    """memory_sizes (S,); token_losses (S, T) nats per predicted byte; tokens (T + 1,) the text read."""

    memory_sizes: list
    token_losses: torch.Tensor
    tokens: torch.Tensor

    def mean_losses(self, skip: int = 0) -> list[float]:
        """Mean loss per memory size over predicted bytes from index `skip` on."""
        return self.token_losses[:, skip:].mean(dim=1).tolist()

    def helped(self, size_index: int = -1) -> torch.Tensor:
        """(T,) loss without memory minus loss with memory_sizes[size_index]: > 0 where memory helped."""
        return self.token_losses[0] - self.token_losses[size_index]

    def __repr__(self) -> str:
        pairs = ", ".join(f"{s}: {l:.4f}" for s, l in zip(self.memory_sizes, self.mean_losses()))
        return f"MemoryCurve({self.token_losses.shape[1]} bytes; loss by memory size {{{pairs}}})"


@torch.no_grad()
def loss_vs_memory(model, tokens: torch.Tensor, memory_sizes=(0, 1024, 4096, 16384), max_tokens: int | None = None,
                   progress: bool = True) -> MemoryCurve:
    """Per-byte losses of `model` on one document `tokens` (N,) for each memory size (tokens per head; 0 = none).

    The model must have at least one memory layer; its own lanes are left as they were (`memory_lanes`).
    Reads floor((N - 1) / context) windows of `context`.
    """
    sizes = [int(s) for s in memory_sizes]
    if not sizes or any(s < 0 for s in sizes):
        raise ValueError(f"memory_sizes must be a non-empty list of ints >= 0, got {memory_sizes!r}")
    tokens = tokens if max_tokens is None else tokens[: max_tokens + 1]
    context = model.config.context
    windows = (tokens.numel() - 1) // context
    if windows < 1:
        raise ValueError(f"document has {tokens.numel()} tokens; need more than context={context}")
    losses = []
    with memory_lanes(model, sizes=sizes, require=True) as run:  # the caller's lanes come back, also on error
        device = next(model.parameters()).device
        for w in tqdm(range(windows), desc="loss vs memory", unit="window", disable=not progress):
            x = tokens[w * context : (w + 1) * context].to(device)
            y = tokens[w * context + 1 : (w + 1) * context + 1].to(device)
            _, loss = run(x.expand(len(sizes), -1), y.expand(len(sizes), -1), reduction="none")
            losses.append(loss.cpu())
    return MemoryCurve(sizes, torch.cat(losses, dim=1), tokens[: windows * context + 1])


@dataclass
class MemorySweep:
    """loss_vs_memory over several documents: names (D,), memory_sizes (S,), losses (D, S) mean nats per byte of
    each document, bytes_per_doc (D,). `mean()` weighs every document equally."""

    names: list
    memory_sizes: list
    losses: torch.Tensor
    bytes_per_doc: list

    def mean(self) -> list[float]:
        """(S,) mean over documents of each document's mean loss, per memory size."""
        return self.losses.mean(dim=0).tolist()

    def rows(self, digits: int | None = 4) -> list[dict]:
        """One dict per document (name, bytes, loss at each size) and a final "mean" row, losses rounded to
        `digits` (None: full precision, as checkpoint JSON stores them)."""
        def fmt(value):
            return float(value) if digits is None else round(float(value), digits)

        out = [{"document": n, "bytes": b, **{f"memory {s}": fmt(v) for s, v in zip(self.memory_sizes, row)}}
               for n, b, row in zip(self.names, self.bytes_per_doc, self.losses)]
        out.append({"document": "mean", "bytes": sum(self.bytes_per_doc),
                    **{f"memory {s}": fmt(v) for s, v in zip(self.memory_sizes, self.mean())}})
        return out

    @classmethod
    def from_record(cls, record: dict) -> MemorySweep:
        """Rebuild from {"memory_sizes": [...], "documents": rows()} (as a checkpoint's JSON stores it); the
        "mean" row is recomputed, not read."""
        sizes = [int(s) for s in record["memory_sizes"]]
        docs = [row for row in record["documents"] if row["document"] != "mean"]
        losses = torch.tensor([[row[f"memory {s}"] for s in sizes] for row in docs], dtype=torch.float64)
        return cls([row["document"] for row in docs], sizes, losses, [row["bytes"] for row in docs])

    def __repr__(self) -> str:
        pairs = ", ".join(f"{s}: {l:.4f}" for s, l in zip(self.memory_sizes, self.mean()))
        return f"MemorySweep({len(self.names)} documents; mean loss by memory size {{{pairs}}})"


def loss_vs_memory_docs(model, documents, memory_sizes=(0, 1024, 4096, 16384), max_tokens: int | None = None,
                        progress: bool = True) -> MemorySweep:
    """`loss_vs_memory` on each document of `documents` (objects with .name and .tokens(), e.g. tasks.Document),
    each read from its start with empty memory (first `max_tokens` + 1 bytes). Returns a MemorySweep."""
    documents = list(documents)
    if not documents:
        raise ValueError("documents is empty; pass at least one document with .name and .tokens()")
    names, rows, sizes = [], [], []
    for doc in tqdm(documents, desc="documents", unit="doc", disable=not progress):
        curve = loss_vs_memory(model, doc.tokens(), memory_sizes, max_tokens=max_tokens, progress=False)
        names.append(doc.name)
        rows.append(curve.mean_losses())
        sizes.append(curve.token_losses.shape[1])
    return MemorySweep(names, [int(s) for s in memory_sizes], torch.tensor(rows, dtype=torch.float64), sizes)
