"""ReRoPE and leaky ReRoPE (Su 2023, "Rectified Rotary Position Embeddings"), exact, as two partial attentions.

RoPE makes the logit of query i and key j depend on the relative position i - j. ReRoPE caps it:

    rel(i, j) = i - j                        if i - j < w
              = w + (i - j - w) / s          otherwise (leaky; s = inf gives plain ReRoPE: every far key looks w away)

so a model never sees a relative position it was not trained on. Because rotations compose,
<R(a) q, R(b) k> = <R(a - b) q, k>, the far part is ordinary attention with the query rotated to
w + (i - w) / s and the key rotated to j / s (plain ReRoPE: query at w, keys un-rotated). So:
- band: keys i - w < j <= i with normal RoPE (`band_attention`);
- far:  keys j <= i - w with the rectified rotations (a bottom-right causal `attend`);
merged by lse: one softmax over all keys, exact gradients. w >= N or s = 1 give plain RoPE.
"""
from __future__ import annotations

import math

import torch

from ..checks import positive_int
from .band import band_attention
from .kernels import attend
from .merge import merge
from .rope import apply_rope, rope_tables
from .validate import check_qkv, check_scale, expand_kv_heads


def check_leak(leak) -> float:
    """The leak s: a number >= 1 (1 = plain RoPE) or None / inf (plain ReRoPE)."""
    if leak is None:
        return math.inf
    if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not leak >= 1:
        raise ValueError(f"leak must be a number >= 1 (1 = RoPE) or None for plain ReRoPE, got {leak!r}")
    return float(leak)


def rerope_relative(distance: torch.Tensor, window: int, leak=None) -> torch.Tensor:
    """The rectified relative position of a key `distance` = i - j >= 0 tokens back (float64)."""
    positive_int("window", window, "tokens")
    s = check_leak(leak)
    d = distance.to(torch.float64)
    far = window + ((d - window) / s if math.isfinite(s) else torch.zeros_like(d))
    return torch.where(d < window, d, far)


def _rope(x, positions, base):

    cos, sin = rope_tables(positions, x.shape[-1], base, dtype=x.dtype)
    return apply_rope(x, cos.to(x.device), sin.to(x.device))


def _check_positions(positions, n, device):
    if positions is None:
        return torch.arange(n, device=device)
    if positions.shape != (n,) or (n > 1 and not bool((positions[1:] - positions[:-1] == 1).all())):
        raise ValueError(f"positions must be ({n},) consecutive integers (the band is cut by index), "
                         f"got shape {tuple(positions.shape)}")
    return positions.to(device)


def rerope_attention(q, k, v, window: int, leak=None, positions=None, base: float = 10000.0,
                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal (leaky) ReRoPE attention; q, k un-rotated (B, H, N, D), v (B, H, N, Dv) -> (out, lse (B, H, N)).

    window: w >= 1 tokens of normal RoPE. leak: s >= 1 (None = plain ReRoPE, 1 = RoPE). positions: (N,)
    consecutive ints (default 0..N-1). base: RoPE base. Exact: equals `rerope_reference`.
    """
    check_qkv(q, k, v)
    positive_int("window", window, "tokens")
    s = check_leak(leak)
    scale = check_scale(scale, q.shape[-1])
    k, v = expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])
    n = q.shape[2]
    if k.shape[2] != n:
        raise ValueError(f"ReRoPE attention is causal self-attention: q has N={n}, k has N={k.shape[2]}")
    pos = _check_positions(positions, n, q.device)
    band = band_attention(_rope(q, pos, base), _rope(k, pos, base), v, window, scale)
    if window >= n:
        return band
    if math.isfinite(s):
        exact = pos.to(torch.float64)  # fractional positions: float32 would round them before the rotation
        q_far = _rope(q[..., window:, :], window + (exact[window:] - window) / s, base)
        k_far = _rope(k[..., : n - window, :], exact[: n - window] / s, base)
    else:
        q_far = _rope(q[..., window:, :], torch.full_like(pos[window:], window), base)
        k_far = k[..., : n - window, :]
    # query i (row i - w) sees far keys j <= i - w: a square causal attention
    o_far, l_far = attend(q_far, k_far, v[..., : n - window, :], causal=True, scale=scale)
    o_far = torch.cat([o_far.new_zeros(*o_far.shape[:2], window, o_far.shape[-1]), o_far], dim=2)
    l_far = torch.cat([l_far.new_full((*l_far.shape[:2], window), float("-inf")), l_far], dim=2)
    return merge([band, (o_far, l_far)])


def rerope_reference(q, k, v, window: int, leak=None, base: float = 10000.0,
                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense truth: logit(i, j) = <R(rel(i, j)) q_i, k_j> * scale with rel = `rerope_relative(i - j)`, causal
    softmax; q, k un-rotated (B, H, N, D). O(N^2 D) memory: tests only."""
    check_qkv(q, k, v)
    scale = check_scale(scale, q.shape[-1])
    n = q.shape[2]
    idx = torch.arange(n)
    dist = (idx[:, None] - idx[None, :]).clamp(min=0)
    rel = rerope_relative(dist, window, leak)  # (N, N)
    cos, sin = rope_tables(rel, q.shape[-1], base, dtype=q.dtype)  # (N, N, D)
    half = q.shape[-1] // 2
    q_rot = torch.cat([-q[..., half:], q[..., :half]], dim=-1)
    rotated = q[..., :, None, :] * cos + q_rot[..., :, None, :] * sin  # (B, H, N, N, D): q_i rotated by rel(i, j)
    scores = (rotated * k[..., None, :, :]).sum(-1) * scale
    scores = scores.masked_fill(idx[None, :] > idx[:, None], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.exp(scores - lse[..., None]) @ v, lse
