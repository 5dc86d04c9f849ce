"""LongNet dilated attention one step at a time, on toy sizes: gather, attend, scatter, merge (for teaching).

`dilated_steps(q, k, v, pattern, head)` runs one head of a `Dilated` pattern the slow, visible way and keeps every
intermediate, so a notebook can print the numbers (paper arXiv 2307.02486, eqs. 4-10):
1. gather (eqs. 4-5): per branch i and segment s, the rows p of the segment with (p mod w_i) mod r_i = offset;
2. attend (eq. 6): dense softmax attention among those rows (`longlab.attend`), giving out and lse per row;
3. scatter (eq. 7): back to their positions; rows a branch does not keep get out = 0, lse = -inf;
4. merge (eqs. 9-10): O = sum_i beta_i O_i with branch weights beta_i = softmax_i(lse_i) (`longlab.merge`):
   branches are combined by their softmax denominators, not concatenated.
The result equals `longlab.dilated_attention` for that head (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention.kernels import attend
from ..attention.merge import merge
from ..attention.patterns import Dilated


@dataclass
class BranchStep:
    """One branch of one head: segments' kept rows, and the scattered (out (N, Dv), lse (N,))."""

    segment_length: int
    rate: int
    offset: int
    segments: list[list[int]]  # kept positions of each segment (gather)
    out: torch.Tensor
    lse: torch.Tensor


@dataclass
class DilatedSteps:
    branches: list[BranchStep]
    weights: torch.Tensor  # (branches, N): beta_i per row, softmax over branches of lse_i (0 where not covered)
    out: torch.Tensor  # (N, Dv) merged
    lse: torch.Tensor  # (N,)


def dilated_steps(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Dilated, head: int = 0
                  ) -> DilatedSteps:
    """q, k, v (1, H, N, D) -> every intermediate of head `head` under `pattern` (module docstring)."""
    if not isinstance(pattern, Dilated):
        raise TypeError(f"pattern must be a Dilated pattern, got {type(pattern).__name__}")
    if q.dim() != 4 or q.shape[0] != 1 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q, k, v must be (1, H, N, D) with matching H and N, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}; slice one batch element first")
    _, heads, n, _ = q.shape
    if not 0 <= head < heads:
        raise ValueError(f"head must be in [0, {heads}), got {head}")
    qh, kh, vh = (t[:, head:head + 1] for t in (q, k, v))
    branches = []
    for b in range(pattern.num_branches):
        w, r = pattern.segment_length(b, n), pattern.dilation_rates[b]
        offset = pattern.head_offsets(b, heads)[head]
        out = torch.zeros(n, v.shape[-1], dtype=v.dtype)
        lse = torch.full((n,), float("-inf"), dtype=q.dtype)
        segments = []
        for start in range(0, n, w):
            rows = [p for p in range(start, min(start + w, n)) if (p - start) % r == offset]
            segments.append(rows)
            if not rows:
                continue
            idx = torch.tensor(rows)
            o, s = attend(qh[..., idx, :], kh[..., idx, :], vh[..., idx, :], causal=pattern.causal)
            out[idx], lse[idx] = o[0, 0], s[0, 0]
        branches.append(BranchStep(w, r, offset, segments, out, lse))
    merged_out, merged_lse = merge([(br.out, br.lse) for br in branches])
    lses = torch.stack([br.lse for br in branches])
    weights = torch.where(torch.isfinite(lses), torch.exp(lses - merged_lse), torch.zeros_like(lses))
    return DilatedSteps(branches, weights, merged_out, merged_lse)
