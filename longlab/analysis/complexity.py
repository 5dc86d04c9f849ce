"""Cost vs sequence length, read from pattern objects: FLOPs, and what a masked kernel would compute.

- `flops_vs_n(patterns, sizes, head_dim, heads)`: exact FLOPs of a gathered kernel (QK^T + PV) per pattern;
- `masked_costs(pattern, heads, n, head_dim, block)`: FLOPs of a dense masked kernel (all N^2 pairs), of a
  block-sparse masked kernel (every non-empty block x block tile, FlexAttention-style), and of gathering;
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..attention.patterns import Dense, Pattern


def flops_vs_n(patterns: Mapping[str, Pattern], sizes: Sequence[int], head_dim: int = 64,
               heads: int = 1) -> dict[str, list[float]]:
    """name -> [FLOPs at each N]: 4 * D per scored query-key pair (QK^T and PV), summed over heads."""
    return {name: [float(p.flops(n, head_dim, heads)) for n in sizes] for name, p in patterns.items()}


def masked_costs(pattern: Pattern, heads: int, n: int, head_dim: int = 64, block: int = 128) -> dict[str, float]:
    """FLOPs of three ways to run `pattern`: 'dense mask' (score everything, mask after), 'block mask'
    (skip empty block x block tiles, as FlexAttention's BlockMask does), 'gathered' (only the kept rows)."""
    dense = Dense(pattern.causal).flops(n, head_dim, heads) if pattern.causal else 4.0 * head_dim * heads * n * n
    return {
        "dense mask": float(4.0 * head_dim * heads * n * n),
        "block mask": float(4.0 * head_dim * heads * n * n * pattern.block_density(heads, n, block)),
        "gathered": float(pattern.flops(n, head_dim, heads)),
        "dense attention": float(dense),
    }

