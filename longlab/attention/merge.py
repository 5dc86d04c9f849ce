"""Merge partial attention results by log-sum-exp.

If key set K is split into pieces K_1..K_m and piece i gives (out_i, lse_i), then attention over all of K is
    lse = log sum_i exp(lse_i),    out = sum_i exp(lse_i - lse) * out_i.
Used for LongNet's branches (paper eq. 10), ring-attention steps and memory + local attention.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def lse_weights(logits: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, lse) of a softmax along `dim`: the stabilised log-sum-exp combine, written once.

    weights = exp(logits - lse) (same shape as logits), lse = log sum exp(logits) along `dim` (dim removed).
    Entries at -inf get weight 0; a slice that is -inf throughout gets weights 0 and lse -inf (never NaN).
    The max shift is detached: its gradient cancels exactly, so gradients stay exact and NaN-free.
    """
    top = logits.amax(dim=dim, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    scaled = torch.exp(logits - top)  # 0 at -inf
    total = scaled.sum(dim=dim, keepdim=True)
    empty = total == 0
    safe_total = torch.where(empty, torch.ones_like(total), total)
    lse = torch.where(empty, torch.full_like(total, float("-inf")), top + safe_total.log())
    return scaled / safe_total, lse.squeeze(dim)


def merge(partials: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine [(out_i, lse_i), ...] with out_i (..., N, Dv) and lse_i (..., N) into one (out, lse).

    Stable when some or all lse_i are -inf (a piece with no visible key gets weight 0; a row with no key
    anywhere gives out = 0, lse = -inf), with exact, NaN-free gradients.
    """
    partials = list(partials)
    if not partials:
        raise ValueError("merge needs at least one (out, lse) pair, got an empty sequence")
    for i, pair in enumerate(partials):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"partials[{i}] must be an (out, lse) pair, got {type(pair).__name__}")
        out, lse = pair
        if out.shape[:-1] != lse.shape:
            raise ValueError(
                f"partials[{i}]: out shape {tuple(out.shape)} needs lse of shape {tuple(out.shape[:-1])}, "
                f"got {tuple(lse.shape)}"
            )
        if out.shape != partials[0][0].shape:
            raise ValueError(f"partials[{i}] out shape {tuple(out.shape)} != {tuple(partials[0][0].shape)}")
    if len(partials) == 1:
        return partials[0][0], partials[0][1]

    weights, lse = lse_weights(torch.stack([lse for _, lse in partials]), dim=0)  # (m, ..., N), (..., N)
    out = sum(w.unsqueeze(-1).to(o.dtype) * o for w, (o, _) in zip(weights, partials))
    return out, lse.to(partials[0][1].dtype)
