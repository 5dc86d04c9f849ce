"""Sparsity patterns as data: which keys each query (of each head) attends to, and how often.

One object per pattern; the kernels, the tests and every figure read the same object:
- `branch_masks(heads, n)`  -> bool (branches, H, N, N): query x key visibility per branch;
- `multiplicity(heads, n)`  -> int (H, N, N): how many branches show key j to query i (0 = unseen);
- `keys_for(query, head, heads, n)` -> {branch: LongTensor of key positions};
- `pairs(heads, n)` / `flops(n, head_dim, heads)`: the work a gathered (not masked) kernel does;
- `mask_mod(heads, n)`: a FlexAttention mask_mod(b, h, q_idx, kv_idx) for the union of branches, in closed
  form (index arithmetic only), so a FlexAttention block mask scales to N = 64k (see `longlab.attention.flex`).
N x N methods are for teaching-sized N (figures, tests); `pairs`/`flops`/`mask_mod` work at any N.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..checks import positive_int

OFFSET_MODES = ("reference", "paper")


def _causal_pairs(m: int) -> int:
    return m * (m + 1) // 2


class Pattern:
    """Base class of every sparsity pattern: which keys query i of head h sees, through which branches.

    To add a pattern (one file or one class here; a frozen dataclass with validated fields, like `Dilated`):
    - set `causal` and `num_branches` (a property if it depends on the fields) and `branch_names()`;
    - `_branch_mask(branch, heads, n)` -> bool (H, N, N), written straight from the paper's definition: the
      teaching-sized truth that `multiplicity`, `keys_for`, figures and tests read;
    - `branch_mask_mod(branch, heads, n)` -> mod(b, h, q_idx, kv_idx) -> bool: the same branch in CLOSED FORM,
      index arithmetic on the arguments only (//, %, comparisons, &, |; per-head constants may be looked up
      in a tensor of H entries). Never index an (H, N, N) tensor: FlexAttention's block mask at N = 65536
      must not cost N^2 memory. It must accept ints as well as broadcastable index tensors. `mask_mod` (the
      union) and the FlexAttention backend's multiplicity (the sum) are built from it. A one-branch pattern
      may write `mask_mod(heads, n)` instead, with the same rules;
    - `pairs(heads, n)`: the scored pairs in closed form, if the N x N default is too slow for large N.
    Then add the pattern to the cases of `test_mask_mods_match_branch_masks` in tests/test_patterns.py (it
    compares every branch_mask_mod with `_branch_mask` for several N and head counts).
    """

    causal: bool = False
    num_branches: int = 1

    def branch_names(self) -> list[str]:
        return [type(self).__name__] * self.num_branches

    def _branch_mask(self, branch: int, heads: int, n: int) -> torch.Tensor:  # (H, N, N) bool
        raise NotImplementedError

    def branch_masks(self, heads: int, n: int) -> torch.Tensor:
        """bool (branches, H, N, N): True where query i of head h sees key j through that branch."""
        positive_int("heads", heads), positive_int("n", n)
        return torch.stack([self._branch_mask(b, heads, n) for b in range(self.num_branches)])

    def multiplicity(self, heads: int, n: int) -> torch.Tensor:
        """int64 (H, N, N): number of branches through which query i sees key j (feeds reference_attention)."""
        return self.branch_masks(heads, n).sum(dim=0)

    def keys_for(self, query: int, head: int, heads: int, n: int) -> dict[int, torch.Tensor]:
        """Key positions query `query` of head `head` sees, per branch (empty tensors for uncovered rows)."""
        if not 0 <= query < n:
            raise ValueError(f"query must be in [0, {n}), got {query}")
        if not 0 <= head < heads:
            raise ValueError(f"head must be in [0, {heads}), got {head}")
        masks = self.branch_masks(heads, n)[:, head, query]
        return {b: masks[b].nonzero().flatten() for b in range(self.num_branches)}

    def pairs(self, heads: int, n: int) -> int:
        """Query-key pairs a gathered kernel scores (sum over heads and branches)."""
        return int(self.multiplicity(heads, n).sum())

    def flops(self, n: int, head_dim: int, heads: int = 1) -> float:
        """FLOPs of QK^T plus PV (2 * D multiply-adds each per scored pair), summed over `heads` heads."""
        return 4.0 * head_dim * self.pairs(heads, n)

    def branch_mask_mod(self, branch: int, heads: int, n: int):
        """mod(b, h, q_idx, kv_idx) -> bool: `_branch_mask` in closed form (see the class docstring)."""
        if self.num_branches == 1 and type(self).mask_mod is not Pattern.mask_mod:
            return self.mask_mod(heads, n)  # a one-branch pattern that wrote its mask_mod directly
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form branch_mask_mod; implement branch_mask_mod(branch, heads, n) "
            f"with index arithmetic only (see the Pattern docstring)")

    def branch_mask_mods(self, heads: int, n: int) -> list:
        """One closed-form mod per branch (`branch_mask_mod`), checked sizes."""
        positive_int("heads", heads), positive_int("n", n)
        return [self.branch_mask_mod(b, heads, n) for b in range(self.num_branches)]

    def mask_mod(self, heads: int, n: int):
        """FlexAttention mask_mod(b, h, q_idx, kv_idx) -> bool: True where query q_idx of head h sees key kv_idx
        through at least one branch (the union of `branch_mask_mods`; index arithmetic only)."""
        mods = self.branch_mask_mods(heads, n)
        if len(mods) == 1:
            return mods[0]

        def union(b, h, q_idx, kv_idx):
            seen = mods[0](b, h, q_idx, kv_idx)
            for mod in mods[1:]:
                seen = seen | mod(b, h, q_idx, kv_idx)
            return seen

        return union

    def block_occupancy(self, heads: int, n: int, block: int = 128) -> torch.Tensor:
        """bool (H, ceil(N/block), ceil(N/block)): True where a block x block tile of the union mask has any
        visible pair, i.e. a tile a block-sparse masked kernel (FlexAttention's BlockMask) must compute."""
        positive_int("block", block)
        union = self.multiplicity(heads, n) > 0
        nb = -(-n // block)
        padded = torch.zeros(heads, nb * block, nb * block, dtype=torch.bool)
        padded[:, :n, :n] = union
        return padded.view(heads, nb, block, nb, block).any(dim=4).any(dim=2)

    def block_density(self, heads: int, n: int, block: int = 128) -> float:
        """Fraction of block x block tiles (over all heads) that are non-empty (1 - block sparsity)."""
        return float(self.block_occupancy(heads, n, block).float().mean())

    def flex_block_mask(self, heads: int, n: int, block: int = 128, device="cpu"):
        """FlexAttention `BlockMask` of the union mask, built from the closed-form mask_mod in bounded memory
        (`longlab.attention.flex.block_mask`)."""
        from .flex import block_mask

        return block_mask(self, heads, n, block=block, device=device)


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
        return heads * (_causal_pairs(n) if self.causal else n * n)


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
        back = _causal_pairs(w) + (n - w) * w  # keys at distance 0..w-1 behind each query
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
                    total += _causal_pairs(m) if self.causal else m * m
        return total

    def flops_formula(self, n: int, head_dim: int, heads: int = 1) -> float:
        """The paper's estimate 2 N d sum_i(w_i / r_i^2) per head for QK^T, times 2 for PV (non-causal)."""
        return 4.0 * n * head_dim * heads * sum(
            self.segment_length(b, n) / self.dilation_rates[b] ** 2 for b in range(self.num_branches)
        )
