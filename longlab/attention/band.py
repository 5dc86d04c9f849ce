"""Exact causal band (sliding-window) attention with lse, on `attend`: query i sees keys i - window < j <= i.

The sequence is cut into blocks of `window` rows (folded into the head axis, so two `attend` calls cover
all blocks). A query block sees (1) its own block causally and (2) the previous block's keys j > i - window:
with both the queries and the keys of that pair flipped, "b > a" becomes the bottom-right causal mask of an
Nq = window, Nk = window - 1 attention (the key at exactly i - window dropped), which `attend` computes.
The two pieces are merged by lse. Work and memory O(N * window); gradients exact through out and lse.
Used by ReRoPE (the band of normal RoPE) and token pooling (the exact local window).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import positive_int
from .kernels import attend
from .merge import merge
from .validate import check_qkv, check_scale, expand_kv_heads


def band_attention(q, k, v, window: int, scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal sliding-window attention (out (B, H, N, Dv), lse (B, H, N)) for q, k, v (B, H(k), N, D / Dv).

    window >= 1: query i sees keys j with i - window < j <= i (window = 1: only itself; window >= N: dense causal).
    """
    check_qkv(q, k, v)
    positive_int("window", window, "tokens")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"band attention is self-attention: q has N={q.shape[2]}, k has N={k.shape[2]}")
    scale = check_scale(scale, q.shape[-1])
    k, v = expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])
    b, h, n, _ = q.shape
    w = min(window, n)
    blocks = -(-n // w)
    pad = blocks * w - n  # zero rows at the end: later than every real query, so causal masks hide them

    def fold(t):  # (B, H, N, D) -> (B, H, blocks, w, D)
        return F.pad(t, (0, 0, 0, pad)).view(b, h, blocks, w, t.shape[-1])

    qb, kb, vb = fold(q), fold(k), fold(v)
    flat = lambda t: t.reshape(b, h * t.shape[2], t.shape[3], t.shape[4])  # noqa: E731
    out, lse = attend(flat(qb), flat(kb), flat(vb), causal=True, scale=scale)
    out, lse = out.view(b, h, blocks, w, -1), lse.view(b, h, blocks, w)
    if blocks > 1 and w > 1:
        # previous block: query row a sees key row c > a; flipped (a' = w-1-a, c' = w-1-c) that is c' <= a' - 1
        q_prev = qb[:, :, 1:].flip(3)
        k_prev, v_prev = (t[:, :, :-1].flip(3)[:, :, :, : w - 1] for t in (kb, vb))
        o_p, l_p = attend(flat(q_prev), flat(k_prev), flat(v_prev), causal=True, scale=scale)
        o_p = o_p.view(b, h, blocks - 1, w, -1).flip(3)
        l_p = l_p.view(b, h, blocks - 1, w).flip(3)
        o_p = torch.cat([torch.zeros_like(o_p[:, :, :1]), o_p], dim=2)
        l_p = torch.cat([torch.full_like(l_p[:, :, :1], float("-inf")), l_p], dim=2)
        out, lse = merge([(out, lse), (o_p, l_p)])
    out = out.reshape(b, h, blocks * w, -1)[:, :, :n]
    return out, lse.reshape(b, h, blocks * w)[:, :, :n]
