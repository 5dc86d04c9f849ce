"""LongMem evaluation on held-out documents: the frozen backbone alone next to SideNet + memory of several sizes,
read with the same windows as `memory_eval.loss_vs_memory` (so the numbers are comparable byte for byte), and the
bit-identity check of the backbone after SideNet training.
"""
from __future__ import annotations

import torch

from ...models.train import load_checkpoint
from ..memory_eval import loss_vs_memory_docs


@torch.no_grad()
def backbone_loss(backbone, tokens: torch.Tensor, max_tokens: int | None = None) -> float:
    """Mean loss (nats/byte) of a memory-free model over floor((N - 1) / context) consecutive windows of `tokens`
    (the first max_tokens + 1 bytes): the windows loss_vs_memory reads."""
    tokens = tokens if max_tokens is None else tokens[: max_tokens + 1]
    context = backbone.config.context
    windows = (tokens.numel() - 1) // context
    if windows < 1:
        raise ValueError(f"document has {tokens.numel()} tokens; need more than context={context}")
    x = tokens[: windows * context].view(windows, context)
    y = tokens[1 : windows * context + 1].view(windows, context)
    return backbone(x, y)[1].item()


def longmem_sweep(model, documents, memory_sizes, max_tokens: int | None = None, progress: bool = True) -> dict:
    """{"memory_sizes", "documents": [{document, bytes, backbone, memory S...}], "mean_backbone", "mean_loss"}:
    per held-out document the frozen backbone's loss and LongMem's at every memory size (nats/byte)."""
    documents = list(documents)
    sweep = loss_vs_memory_docs(model, documents, memory_sizes, max_tokens=max_tokens, progress=progress)
    rows = sweep.rows(digits=None)[:-1]
    for row, doc in zip(rows, documents):
        row["backbone"] = backbone_loss(model.backbone, doc.tokens(), max_tokens)
    return {"memory_sizes": sweep.memory_sizes, "documents": rows,
            "mean_backbone": sum(r["backbone"] for r in rows) / len(rows), "mean_loss": sweep.mean()}


def backbone_unchanged(model, backbone_path) -> dict:
    """Compare every tensor of the LongMem backbone with the checkpoint file it came from, bit for bit.
    Returns {"tensors": count compared, "identical": count equal, "bit_identical": all equal}."""
    original = dict(load_checkpoint(backbone_path)[0].state_dict())
    mine = model.backbone.state_dict()
    names = sorted(mine)
    absent = [n for n in names if n not in original]
    if absent:
        raise ValueError(f"{backbone_path} lacks the backbone tensors {absent}; pass the backbone checkpoint itself")
    same = sum(torch.equal(original[n], mine[n]) for n in names)
    return {"tensors": len(names), "identical": same, "bit_identical": same == len(names)}
