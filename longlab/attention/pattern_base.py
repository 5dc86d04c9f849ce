"""`Pattern`, the base of every sparsity pattern (what a new pattern implements: the class docstring).

The concrete patterns live in `patterns.py` (Dense, SlidingWindow, Dilated) and in one file per method
(e.g. `floatlike.py`); import them from there.
"""
from __future__ import annotations

import torch

from ..checks import positive_int


def causal_pairs(m: int) -> int:
    """Pairs (i, j) with j <= i among m rows."""
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
