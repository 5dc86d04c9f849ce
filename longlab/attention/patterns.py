"""Sparsity patterns as data: which keys each query (of each head) attends to, and how often.

One object per pattern; the kernels, the tests and every figure read the same object:
- `branch_masks(heads, n)`  -> bool (branches, H, N, N): query x key visibility per branch;
- `multiplicity(heads, n)`  -> int (H, N, N): how many branches show key j to query i (0 = unseen);
- `keys_for(query, head, heads, n)` -> {branch: LongTensor of key positions};
- `pairs(heads, n)` / `flops(n, head_dim, heads)`: the work a gathered (not masked) kernel does;
- `mask_mod(heads, n)`: a FlexAttention mask_mod(b, h, q_idx, kv_idx) for the union of branches, in closed
  form (index arithmetic only), so a FlexAttention block mask scales to N = 64k (see `longlab.attention.flex`).
N x N methods are for teaching-sized N (figures, tests); `pairs`/`flops`/`mask_mod` work at any N.
The base class, and what a new pattern implements, is `pattern_base.Pattern` (re-exported here).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..checks import positive_int
from .pattern_base import Pattern, causal_pairs

__all__ = ["Pattern", "Dense", "SlidingWindow", "Dilated", "head_offsets", "OFFSET_MODES"]

OFFSET_MODES = ("reference", "paper")


@dataclass(frozen=True)
class Dense(Pattern):
    """Every query sees every key (or every earlier key when causal)."""

    causal: bool = False

    def branch_names(self) -> list[str]:
        return ["dense"]

    def _branch_mask(self, branch, heads, n):
        mask = torch.ones(n, n, dtype=torch.bool)
        if self.causal:
            mask = mask.tril()
        return mask.expand(heads, n, n)

    def branch_mask_mod(self, branch, heads, n):
        causal = self.causal

        def dense(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) if causal else (kv_idx >= 0) & (q_idx >= 0)

        return dense

    def pairs(self, heads, n):
        return heads * (causal_pairs(n) if self.causal else n * n)


@dataclass(frozen=True)
class SlidingWindow(Pattern):
    """Query i sees keys j with |i - j| < window (causal: i - window < j <= i), as in Longformer/Mistral."""

    window: int = 256
    causal: bool = False

    def __post_init__(self):
        positive_int("window", self.window)

    def branch_names(self) -> list[str]:
        return [f"window {self.window}"]

    def _branch_mask(self, branch, heads, n):
        idx = torch.arange(n)
        dist = idx[:, None] - idx[None, :]
        mask = (dist < self.window) & (dist > (-1 if self.causal else -self.window))
        return mask.expand(heads, n, n)

    def branch_mask_mod(self, branch, heads, n):
        window, low = self.window, (-1 if self.causal else -self.window)

        def sliding_window(b, h, q_idx, kv_idx):
            dist = q_idx - kv_idx
            return (dist < window) & (dist > low)

        return sliding_window

    def pairs(self, heads, n):
        w = min(self.window, n)
        back = causal_pairs(w) + (n - w) * w  # keys at distance 0..w-1 behind each query
        return heads * (back if self.causal else 2 * back - n)


def head_offsets(mode, heads: int, rate: int) -> list[int]:
    """Row offset of each head in a branch with dilation `rate`.

    "reference" (LongNet's released code): offset(h) = h // ceil(H / r), contiguous blocks of heads.
    "paper" (LongNet eq. 8 text): offset(h) = h mod r.
    """
    if mode == "reference":
        block = math.ceil(heads / rate)
        return [h // block for h in range(heads)]
    if mode == "paper":
        return [h % rate for h in range(heads)]
    raise ValueError(f"offsets must be 'reference', 'paper' or a per-branch list of per-head ints, got {mode!r}")


@dataclass(frozen=True)
class Dilated(Pattern):
    """LongNet's multi-branch dilated pattern (arXiv 2307.02486, eqs. 4-10).

    Branch i: the sequence is cut into segments of w_i = min(segment_lengths[i], N) positions; inside a
    segment, head h keeps the rows p whose in-segment index is = offset_i(h) (mod r_i); kept rows attend densely
    (causally when `causal`) to the kept rows of the same segment. A key seen through several branches counts
    once per branch (the lse merge does that). `offsets`: "reference", "paper" or [[offset per head] per branch].
    """

    segment_lengths: Sequence[int] = (2048, 4096, 8192)
    dilation_rates: Sequence[int] = (1, 2, 4)
    causal: bool = False
    offsets: object = "reference"

    def __post_init__(self):
        w, r = list(self.segment_lengths), list(self.dilation_rates)
        if len(w) == 0 or len(w) != len(r):
            raise ValueError(
                f"segment_lengths and dilation_rates need the same non-zero length, got {len(w)} and {len(r)}"
            )
        for i, (wi, ri) in enumerate(zip(w, r)):
            positive_int(f"segment_lengths[{i}]", wi)
            positive_int(f"dilation_rates[{i}]", ri)
            if wi % ri:
                raise ValueError(
                    f"segment_lengths[{i}]={wi} is not divisible by dilation_rates[{i}]={ri}; "
                    f"pick a segment length that is a multiple of its rate"
                )
        if not isinstance(self.offsets, str):
            if len(self.offsets) != len(w):
                raise ValueError(f"offsets needs one list per branch ({len(w)}), got {len(self.offsets)}")
        elif self.offsets not in OFFSET_MODES:
            raise ValueError(f"offsets must be one of {OFFSET_MODES} or a per-branch list, got {self.offsets!r}")
        object.__setattr__(self, "segment_lengths", tuple(w))
        object.__setattr__(self, "dilation_rates", tuple(r))

    @classmethod
    def geometric(cls, w0: int, alpha: int, branches: int, causal: bool = False, offsets="reference") -> Dilated:
        """LongNet's schedule (paper sec. 2.2): w_i = w0 * alpha^i, r_i = alpha^i for i < branches."""
        for name, value in (("w0", w0), ("alpha", alpha), ("branches", branches)):
            positive_int(name, value)
        return cls(tuple(w0 * alpha**i for i in range(branches)), tuple(alpha**i for i in range(branches)),
                   causal=causal, offsets=offsets)

    @property
    def num_branches(self) -> int:
        return len(self.segment_lengths)

    def branch_names(self) -> list[str]:
        return [f"w={w}, r={r}" for w, r in zip(self.segment_lengths, self.dilation_rates)]

    def head_offsets(self, branch: int, heads: int) -> list[int]:
        """Offsets of all heads in `branch` (validated against the rate)."""
        rate = self.dilation_rates[branch]
        if isinstance(self.offsets, str):
            return head_offsets(self.offsets, heads, rate)
        offs = list(self.offsets[branch])
        if len(offs) != heads:
            raise ValueError(f"offsets[{branch}] has {len(offs)} entries but there are {heads} heads")
        for h, o in enumerate(offs):
            if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < rate:
                raise ValueError(f"offsets[{branch}][{h}]={o!r} must be an int in [0, {rate})")
        return offs

    def segment_length(self, branch: int, n: int) -> int:
        """Effective segment length min(w_i, N) (the paper/reference clamp)."""
        return min(self.segment_lengths[branch], n)

    def kept_rows(self, branch: int, head: int, heads: int, n: int) -> torch.Tensor:
        """LongTensor of the positions head `head` keeps in `branch` (all segments, ascending)."""
        w, r = self.segment_length(branch, n), self.dilation_rates[branch]
        off = self.head_offsets(branch, heads)[head]
        pos = torch.arange(n)
        return pos[(pos % w) % r == off]

    def _branch_mask(self, branch, heads, n):
        w = self.segment_length(branch, n)
        r = self.dilation_rates[branch]
        pos = torch.arange(n)
        seg = pos // w
        phase = (pos % w) % r
        offs = torch.tensor(self.head_offsets(branch, heads))
        kept = phase[None, :] == offs[:, None]  # (H, N)
        same = seg[:, None] == seg[None, :]
        mask = same[None] & kept[:, :, None] & kept[:, None, :]
        if self.causal:
            mask = mask & torch.ones(n, n, dtype=torch.bool).tril()
        return mask

    def branch_mask_mod(self, branch, heads, n):
        """Closed form of branch i: q and kv lie in one segment of w_i = min(w_i, N) and both are rows head h
        keeps, p mod r_i = offset_i(h) (w_i is a multiple of r_i, and a clamped w_i = N is one segment, so the
        in-segment index mod r_i is p mod r_i); causal adds kv <= q."""
        w, r, causal = self.segment_length(branch, n), self.dilation_rates[branch], self.causal
        offset = self._offset_of_head(branch, heads)

        def dilated_branch(b, h, q_idx, kv_idx):
            off = offset(h)
            hit = (q_idx // w == kv_idx // w) & (q_idx % r == off) & (kv_idx % r == off)
            return hit & (kv_idx <= q_idx) if causal else hit

        return dilated_branch

    def _offset_of_head(self, branch: int, heads: int):
        """h -> offset of head h in `branch`: arithmetic for the named modes, else a lookup in H entries."""
        rate = self.dilation_rates[branch]
        if self.offsets == "reference":
            block = math.ceil(heads / rate)
            return lambda h: h // block
        if self.offsets == "paper":
            return lambda h: h % rate
        table = torch.tensor(self.head_offsets(branch, heads))
        return lambda h: table.to(h.device)[h] if isinstance(h, torch.Tensor) else int(table[h])

    def pairs(self, heads, n):
        total = 0
        for b in range(self.num_branches):
            w, r = self.segment_length(b, n), self.dilation_rates[b]
            for off in self.head_offsets(b, heads):
                for start in range(0, n, w):
                    length = min(w, n - start)
                    m = max(0, (length - off + r - 1) // r) if off < length else 0
                    total += causal_pairs(m) if self.causal else m * m
        return total

    def flops_formula(self, n: int, head_dim: int, heads: int = 1) -> float:
        """The paper's estimate 2 N d sum_i(w_i / r_i^2) per head for QK^T, times 2 for PV (non-causal)."""
        return 4.0 * n * head_dim * heads * sum(
            self.segment_length(b, n) / self.dilation_rates[b] ** 2 for b in range(self.num_branches)
        )
