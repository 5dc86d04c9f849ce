"""Log-spaced ("float-like") sparsity: dense nearby, sparser far away, like the numbers a float can represent.

A query keeps the keys at relative distances d on a floating-point grid with m mantissa bits:
    every d < 2^m, then 2^m distances per octave [2^e, 2^(e+1)) spaced 2^(e-m) apart,
i.e. d = (1 + t / 2^m) * 2^e with t in [0, 2^m). So the octave [2^m, 2^(m+1)) is still dense (spacing 1),
every later octave keeps 2^m keys, and a query at distance up to N keeps about 2^m (log2 N - m + 2) keys:
O(N 2^m log N) pairs in all (compare LogSparse, Li et al. 2019, which keeps one key per octave).
Closed form: d is on the grid iff d = 0 or d < lowbit(d) * 2^(m+1), lowbit(d) = d & -d (the value of d's
lowest set bit): the bits of d from the top set bit down to the lowest span at most m + 1 places.

`FloatLike` is the `Pattern` (masks, pairs, FLOPs, closed-form mask_mod) and `floatlike_attention` the
gathered kernel: each query's keys are gathered (N x M, M = keys per query), never an N x N mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import int_at_least
from .patterns import Pattern
from .validate import check_qkv, check_scale, expand_kv_heads


def grid_distances(mantissa_bits: int, limit: int) -> torch.Tensor:
    """LongTensor of the grid distances d < limit, ascending, from the definition (octave by octave)."""
    m = int_at_least("mantissa_bits", mantissa_bits, 0)
    dist = list(range(min(limit, 2**m)))
    e = m
    while 2**e < limit:
        step = 2 ** (e - m)
        dist += [2**e + t * step for t in range(2**m) if 2**e + t * step < limit]
        e += 1
    return torch.tensor(dist, dtype=torch.long)


def on_grid(d, mantissa_bits: int):
    """True where distance d >= 0 (int or int tensor) is on the m-bit grid (closed form, no tables)."""
    return (d == 0) | (d < (d & -d) * 2 ** (mantissa_bits + 1))


def grid_count(x: torch.Tensor, mantissa_bits: int) -> torch.Tensor:
    """Number of grid distances in [0, x] for each x >= 0 (int64 tensor), in closed form per octave."""
    m = mantissa_bits
    x = x.to(torch.long)
    total = torch.minimum(x, torch.full_like(x, 2 ** (m + 1) - 1)) + 1  # distances below 2^(m+1) are all kept
    e = m + 1
    while x.numel() and 2**e <= int(x.max()):
        top = torch.minimum(x, torch.full_like(x, 2 ** (e + 1) - 1))
        total += torch.where(x >= 2**e, (top - 2**e) // 2 ** (e - m) + 1, torch.zeros_like(x))
        e += 1
    return total


@dataclass(frozen=True)
class FloatLike(Pattern):
    """Query i sees key j when |i - j| (causal: i - j >= 0) is on the m-bit floating-point grid."""

    mantissa_bits: int = 2
    causal: bool = False

    def __post_init__(self):
        int_at_least("mantissa_bits", self.mantissa_bits, 0)

    def branch_names(self) -> list[str]:
        return [f"float-like m={self.mantissa_bits}"]

    def _branch_mask(self, branch, heads, n):
        i = torch.arange(n)
        dist = i[:, None] - i[None, :]
        if not self.causal:
            dist = dist.abs()
        kept = torch.zeros(n, n, dtype=torch.bool)
        grid = torch.zeros(n, dtype=torch.bool)
        grid[grid_distances(self.mantissa_bits, n)] = True
        kept[dist >= 0] = grid[dist[dist >= 0]]
        return kept.expand(heads, n, n)

    def mask_mod(self, heads, n):
        m, causal = self.mantissa_bits, self.causal

        def float_like(b, h, q_idx, kv_idx):
            d = q_idx - kv_idx
            if causal:
                return (d >= 0) & on_grid(d * (d >= 0), m)
            d = d * ((d >= 0) * 2 - 1)  # |d| for ints and tensors alike
            return on_grid(d, m)

        return float_like

    def keys_per_query(self, n: int) -> torch.Tensor:
        """int64 (N,): keys query i sees (closed form)."""
        i = torch.arange(n)
        before = grid_count(i, self.mantissa_bits)
        return before if self.causal else before + grid_count(n - 1 - i, self.mantissa_bits) - 1

    def pairs(self, heads, n):
        return heads * int(self.keys_per_query(n).sum())

    def key_index(self, n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(index (N, M) long, valid (N, M) bool): the keys each query gathers (M = most keys of any query)."""
        dist = grid_distances(self.mantissa_bits, n).to(device)
        offsets = -dist if self.causal else torch.cat([-dist.flip(0), dist[1:]])
        idx = torch.arange(n, device=device)[:, None] + offsets[None, :]
        valid = (idx >= 0) & (idx < n)
        return idx.clamp(0, n - 1), valid


def floatlike_attention(q, k, v, mantissa_bits: int, causal: bool = False, scale: float | None = None):
    """Float-like sparse self-attention (out (B, H, N, Dv), lse (B, H, N)) on a gathered kernel.

    q (B, H, N, D), k/v (B, Hk, N, D / Dv). Query i attends (one softmax) to the keys of `FloatLike(m)`;
    work and memory O(N M D) with M ~ 2^m log2 N keys per query. Exact gradients (autograd through gathers).
    Equals `reference_attention(q, k, v, mask=FloatLike(m, causal).multiplicity(H, N) > 0)`.
    """
    check_qkv(q, k, v)
    pattern = FloatLike(mantissa_bits, causal)
    n = q.shape[2]
    if k.shape[2] != n:
        raise ValueError(f"float-like attention is self-attention: q has N={n}, k has N={k.shape[2]}")
    scale = check_scale(scale, q.shape[-1])
    k, v = expand_kv_heads(k, q.shape[1]), expand_kv_heads(v, q.shape[1])
    idx, valid = pattern.key_index(n, q.device)
    k_g, v_g = k[:, :, idx], v[:, :, idx]  # (B, H, N, M, D)
    scores = torch.einsum("bhnd,bhnmd->bhnm", q, k_g) * scale
    scores = scores.masked_fill(~valid, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # every query sees itself: finite
    out = torch.einsum("bhnm,bhnmd->bhnd", torch.exp(scores - lse[..., None]), v_g)
    return out, lse
