"""Token pooling / compressed memory: far keys averaged in blocks, near keys exact, one softmax (lse merge).

Keys and values are mean-pooled over blocks of p tokens: block b covers positions bp .. bp + p - 1 and gives
    k~_b = mean(k_bp .. k_bp+p-1),   v~_b = mean(v_bp .. v_bp+p-1)
(the compressive idea of Rae et al. 2019 with mean pooling, as in pooling-based long-context models).
Query i (causal) sees
- every exact key in its local window i - w < j <= i (`band_attention`), and
- every pooled block that ends before that window: bp + p - 1 <= i - w (so a query never sees a block that
  ends after it, and no token is counted both exactly and pooled).
The two partial attentions are merged by lse. p = 1 gives dense causal attention. Work O(N w + N^2 / p).
"""
from __future__ import annotations

import torch

from ..checks import positive_int
from .band import band_attention
from .merge import merge
from .validate import check_qkv, check_scale, expand_kv_heads


def check_pool_block(block, n: int) -> int:
    positive_int("block", block, "tokens")
    if block > n:
        raise ValueError(f"pooled block block={block} is larger than the sequence N={n}: no block would ever be "
                         f"complete; pick block <= N")
    return block


def pool_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean over complete blocks of `block` rows: (B, H, N, D) -> (B, H, N // block, D) (a partial tail is dropped)."""
    nb = x.shape[2] // block
    return x[:, :, : nb * block].reshape(*x.shape[:2], nb, block, x.shape[-1]).mean(-2)


def pooled_visibility(n: int, block: int, window: int, device=None) -> torch.Tensor:
    """bool (N, N // block): query i sees pooled block b iff the block ends before i's window: (b+1)p - 1 <= i - w."""
    ends = (torch.arange(n // block, device=device) + 1) * block - 1
    return ends[None, :] <= torch.arange(n, device=device)[:, None] - window


def pooled_key_set(n: int, block: int, window: int) -> torch.Tensor:
    """bool (N, N + N // block): query i x [exact keys 0..N-1, pooled blocks]; for figures and the reference."""
    check_pool_block(block, n)
    positive_int("window", window, "tokens")
    i = torch.arange(n)
    dist = i[:, None] - i[None, :]
    return torch.cat([(dist >= 0) & (dist < window), pooled_visibility(n, block, window)], dim=1)


def _masked_attention(q, k, v, visible, scale):
    """Exact masked softmax (out, lse) with plain autograd; rows with no visible key give (0, -inf)."""
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    return torch.exp(scores - safe[..., None]) @ v, lse


def pooled_attention(q, k, v, block: int, window: int, scale: float | None = None):
    """Causal attention over an exact local window plus mean-pooled far blocks; q, k, v (B, H(k), N, D / Dv).

    block: p tokens per pooled key (1 <= p <= N). window: w >= 1 exact keys (the query itself included).
    Returns (out (B, H, N, Dv), lse (B, H, N)); exact gradients (through the pooling too).
    """
    check_qkv(q, k, v)
    n = q.shape[2]
    if k.shape[2] != n:
        raise ValueError(f"pooled attention is causal self-attention: q has N={n}, k has N={k.shape[2]}")
    check_pool_block(block, n)
    positive_int("window", window, "tokens")
    scale = check_scale(scale, q.shape[-1])
    k, v = expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])
    local = band_attention(q, k, v, window, scale)
    if n - window < block:  # no block can end before any query's window
        return local
    far = _masked_attention(q, pool_blocks(k, block), pool_blocks(v, block),
                            pooled_visibility(n, block, window, q.device), scale)
    return merge([local, far])


def pooled_pairs(n: int, block: int, window: int) -> int:
    """Query-key pairs scored (exact window pairs + visible pooled blocks), for cost comparisons."""
    return int(pooled_key_set(n, block, window).sum())
