"""Dense masked softmax attention: the plain-math truth every fast method is tested against.

Slow (materializes the full Nq x Nk score matrix) and exact; use it in float64 for tests.
"""
from __future__ import annotations

import torch

from .merge import lse_weights
from .validate import check_qkv, check_scale, expand_kv_heads


def causal_mask(n_q: int, n_k: int, device=None) -> torch.Tensor:
    """Boolean (Nq, Nk) mask, True = visible, aligned bottom-right.

    Query i sits at absolute position i + (Nk - Nq) so the last query sees every key. When Nq == Nk this is the
    usual lower triangle. (SDPA's is_causal aligns top-left when Nq != Nk; longlab never does.)
    """
    rows = torch.arange(n_q, device=device)[:, None] + (n_k - n_q)
    cols = torch.arange(n_k, device=device)[None, :]
    return cols <= rows


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    multiplicity: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale) v computed densely, returning (out, lse).

    Shapes: q (B, H, Nq, D), k (B, Hk, Nk, D), v (B, Hk, Nk, Dv) with Hk dividing H;
    out (B, H, Nq, Dv), lse (B, H, Nq) (natural log of the softmax normaliser).

    mask: bool, broadcastable to (B, H, Nq, Nk), True = key visible.
    multiplicity: (H or 1, Nq, Nk) non-negative counts: key j is present m_ij times in query i's key set
        (0 = absent). A sparse method that shows a key through several branches counts it once per branch;
        weights are m_ij exp(s_ij) / sum_j m_ij exp(s_ij) and lse = log sum_j m_ij exp(s_ij).
    causal: bottom-right aligned when Nq != Nk (see `causal_mask`).

    Fully masked rows give out = 0 and lse = -inf (never NaN), with zero gradient.
    """
    check_qkv(q, k, v)
    scale = check_scale(scale, q.shape[-1])
    heads, n_q, n_k = q.shape[1], q.shape[2], k.shape[2]
    k, v = expand_kv_heads(k, heads), expand_kv_heads(v, heads)

    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device)
    if causal:
        keep = keep & causal_mask(n_q, n_k, q.device)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = visible), got {mask.dtype}")
        keep = keep & mask.to(q.device)
    if multiplicity is not None:
        if multiplicity.dim() != 3 or multiplicity.shape[0] not in (1, heads) or multiplicity.shape[1:] != (n_q, n_k):
            raise ValueError(
                f"multiplicity must have shape (H or 1, Nq, Nk) = ({heads} or 1, {n_q}, {n_k}), "
                f"got {tuple(multiplicity.shape)}"
            )
        if (multiplicity < 0).any():
            raise ValueError("multiplicity must be non-negative (a count of how often each key is present)")
        mult = multiplicity.to(device=q.device, dtype=scores.dtype)
        keep = keep & (mult > 0)
        scores = scores + torch.where(mult > 0, mult, torch.ones_like(mult)).log()
    keep = keep.expand_as(scores)
    scores = scores.masked_fill(~keep, float("-inf"))

    weights, lse = lse_weights(scores, dim=-1)  # masked entries (-inf) get weight 0
    return torch.matmul(weights, v), lse
