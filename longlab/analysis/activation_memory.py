"""Per-rank activation memory of one sequence-parallel attention layer: what each rank must hold, vs P and N.

Sequence parallelism exists because one device cannot hold a long sequence's activations. With the sequence cut
into P shards each rank starts with N/P tokens of width h = H * D (H heads of D dims), i.e. N h / P numbers per
tensor. What it must hold *during* attention depends on the method (forward, per layer, elements):
- single device (P = 1): q, k, v, out of all N tokens: 4 N h;
- Ulysses (Jacobs et al. 2023, arXiv 2309.14509): after the all-to-all, q, k, v, out of all N tokens for its H/P
  heads: 4 N h / P (falls as 1/P; P <= H);
- ring / zigzag (Liu et al. 2023, arXiv 2310.01889): its own q, k, v, out shard plus one visiting k/v block:
  6 N h / P (a double-buffered implementation that prefetches the next block holds 8 N h / P);
- Megatron-SP (Korthikanti et al. 2022, arXiv 2205.05198): the all-gathered layer input, N h, plus q, k, v, out
  of its H/P heads: N h + 4 N h / P (the gathered input does not shrink with P).
Memory-efficient kernels never store the N x N scores, so these are the whole attention working set up to the
float32 lse (N H / P numbers). LongNet's distributed dilated attention holds sparse gathers whose size depends on
the pattern; it is not modelled here.
"""
from __future__ import annotations

from ..checks import positive_int

ACTIVATION_METHODS = ("single device", "ulysses", "ring", "zigzag", "megatron")
_HOLDS = {
    "single device": "q, k, v, out of all N tokens",
    "ulysses": "q, k, v, out of all N tokens, H/P heads",
    "ring": "own q, k, v, out shard + one visiting k/v block",
    "zigzag": "own q, k, v, out shard + one visiting k/v block",
    "megatron": "all-gathered input (N x h) + q, k, v, out of H/P heads",
}


def activation_elements_per_rank(method: str, n: int, heads: int, head_dim: int, world_size: int = 1) -> float:
    """Numbers one rank holds in one attention layer's forward (module docstring); h = heads * head_dim."""
    if method not in ACTIVATION_METHODS:
        raise ValueError(f"method must be one of {ACTIVATION_METHODS}, got {method!r}")
    n, heads = positive_int("n", n), positive_int("heads", heads)
    head_dim, world = positive_int("head_dim", head_dim), positive_int("world_size", world_size)
    if method == "single device" and world != 1:
        raise ValueError(f"world_size must be 1 for 'single device', got {world}; pick a parallel method")
    if method == "ulysses" and heads % world:
        raise ValueError(f"Ulysses needs world_size to divide heads, got heads={heads}, world_size={world}; "
                         f"use P <= H with H % P == 0")
    h = heads * head_dim
    shard = n * h / world
    if method in ("single device", "ulysses"):
        return 4 * shard
    if method in ("ring", "zigzag"):
        return 6 * shard
    return n * h + 4 * shard  # megatron


def activation_bytes_per_rank(method: str, n: int, heads: int, head_dim: int, world_size: int = 1,
                              dtype_bytes: int = 2) -> float:
    """activation_elements_per_rank times the element size (2 for bf16/fp16)."""
    return activation_elements_per_rank(method, n, heads, head_dim, world_size) * positive_int("dtype_bytes",
                                                                                                dtype_bytes)


def what_it_holds(method: str) -> str:
    """One line naming the tensors counted for `method`."""
    if method not in _HOLDS:
        raise ValueError(f"method must be one of {ACTIVATION_METHODS}, got {method!r}")
    return _HOLDS[method]
