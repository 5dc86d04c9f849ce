"""Loss as a function of memory size (Memorizing Transformer, arXiv 2203.08913, sec. 4: perplexity falls as
the kNN memory grows) and per-token "where memory helped" losses.

One document is read window after window; every memory size is one batch lane of the same text, so all sizes
are evaluated in a single pass with identical local context, and differences come from memory alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


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

    The model must have at least one memorizing layer. Reads floor((N - 1) / context) windows of `context`.
    """
    layers = model.memory_layers()
    if not layers:
        raise ValueError("model has no memory layer; build it with attention=(..., 'memorizing')")
    sizes = [int(s) for s in memory_sizes]
    if not sizes or any(s < 0 for s in sizes):
        raise ValueError(f"memory_sizes must be a non-empty list of ints >= 0, got {memory_sizes!r}")
    tokens = tokens if max_tokens is None else tokens[: max_tokens + 1]
    context = model.config.context
    windows = (tokens.numel() - 1) // context
    if windows < 1:
        raise ValueError(f"document has {tokens.numel()} tokens; need more than context={context}")
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    for layer in layers:
        layer.set_lane_memory_sizes(sizes, device=param.device, dtype=param.dtype)
    losses = []
    for w in tqdm(range(windows), desc="loss vs memory", unit="window", disable=not progress):
        x = tokens[w * context : (w + 1) * context].to(param.device)
        y = tokens[w * context + 1 : (w + 1) * context + 1].to(param.device)
        _, loss = model(x.expand(len(sizes), -1), y.expand(len(sizes), -1), reduction="none")
        losses.append(loss.cpu())
    for layer in layers:
        layer.set_memory_size(model.config.memory_size)
    model.train(was_training)
    return MemoryCurve(sizes, torch.cat(losses, dim=1), tokens[: windows * context + 1])
