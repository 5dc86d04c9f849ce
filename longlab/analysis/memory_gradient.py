"""Show, by computing it, that a kNN memory passes information forward but no gradient backward.

Memorizing Transformer (Wu et al. 2022, arXiv 2203.08913, sec. 3): the (key, value) pairs of past windows are
stored without gradient, so training never back-propagates into the tokens that wrote the memory. The check:
read window 1 (it writes its keys and values into the memory), then window 2 (it reads them), both with autograd
on; differentiate window 2's loss with respect to window 1's token embeddings. The forward dependency is real
(window 2's loss changes when the memory is emptied); the gradient is exactly absent (autograd finds no path).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..memory.lanes import memory_lanes, memory_layers


@dataclass
class MemoryGradientCheck:
    loss_with_memory: float  # window 2's loss after window 1 was written into memory
    loss_without_memory: float  # window 2's loss with an empty memory (same local context)
    gradient_reaches_window1: bool  # False: autograd has no path from window 2's loss to window 1
    stored_requires_grad: bool  # do the stored keys/values carry autograd history?
    stored_tensors: int  # how many tensors the memory lanes held after window 1 (keys, values, positions, ...)
    local_gradient_norm: float  # |d loss2 / d window-2 embeddings|: the gradient that does flow

    def __repr__(self) -> str:
        return (f"MemoryGradientCheck(loss {self.loss_without_memory:.4f} -> {self.loss_with_memory:.4f} with "
                f"memory, gradient reaches window 1: {self.gradient_reaches_window1}, stored tensors require grad: "
                f"{self.stored_requires_grad})")


def memory_gradient_check(model, tokens: torch.Tensor, memory_size: int = 4096) -> MemoryGradientCheck:
    """tokens (N,) with N > 2 * context: windows 1 and 2 are the first two context-long windows."""
    layers = memory_layers(model)
    if not layers:
        raise ValueError("model has no memory layer; build it with attention=(..., 'memorizing')")
    context = model.config.context
    if tokens.dim() != 1 or tokens.numel() <= 2 * context:
        raise ValueError(f"tokens must be 1-D with more than 2 * context = {2 * context} bytes, "
                         f"got shape {tuple(tokens.shape)}")
    w1, w2 = tokens[None, :context], tokens[None, context : 2 * context]
    y2 = tokens[None, context + 1 : 2 * context + 1]
    captured = []
    hook = model.embed.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad(), memory_lanes(model, sizes=[memory_size]) as run:
            run(w1, doc_start=torch.tensor([True]))  # writes window 1's keys and values
            stored = [t for layer in layers for t in _stored_tensors(layer)]
            _, loss2 = run(w2, y2, doc_start=torch.tensor([False]))
            emb1, emb2 = captured[0], captured[1]
            g1, g2 = torch.autograd.grad(loss2, (emb1, emb2), allow_unused=True)
        with torch.no_grad(), memory_lanes(model, sizes=[memory_size]) as run:
            _, empty = run(w2, y2, doc_start=torch.tensor([True]))
    finally:
        hook.remove()
    return MemoryGradientCheck(float(loss2.detach()), float(empty), g1 is not None and bool(g1.abs().sum() > 0),
                               any(t.requires_grad or t.grad_fn is not None for t in stored), len(stored),
                               0.0 if g2 is None else float(g2.norm()))


def _stored_tensors(layer) -> list[torch.Tensor]:
    """Every tensor held by the layer's memory lanes (keys, values, ...)."""
    found = []
    for memory in getattr(layer, "memories", []) or []:
        if memory is None:
            continue
        found += [t for t in vars(memory).values() if isinstance(t, torch.Tensor)]
    return found
