"""How a full (B, H, N, D) sequence is cut into per-rank shards, and glued back.

- "ulysses": balanced contiguous shards (sizes differ by at most one when P does not divide N);
- "ring"/"longnet": P equal contiguous shards (N divisible by P);
- "zigzag": 2P equal chunks; rank r holds chunks r and 2P-1-r (balanced causal work, Brandon et al. 2023).
"""
from __future__ import annotations

import torch

METHODS = ("ulysses", "ring", "zigzag", "longnet")


def shard_sizes(n: int, world_size: int) -> list[int]:
    """Balanced contiguous shard lengths: the first N mod P ranks get one extra position."""
    return [n // world_size + (1 if r < n % world_size else 0) for r in range(world_size)]


def rank_chunks(layout: str, rank: int, world_size: int) -> list[int]:
    """Chunk ids a rank holds: contiguous -> [rank] of P chunks; zigzag -> [rank, 2P-1-rank] of 2P chunks."""
    if layout == "contiguous":
        return [rank]
    if layout == "zigzag":
        return [rank, 2 * world_size - 1 - rank]
    raise ValueError(f"layout must be 'contiguous' or 'zigzag', got {layout!r}")


def check_divisible(method: str, n: int, world_size: int) -> None:
    parts = 2 * world_size if method == "zigzag" else world_size
    if method != "ulysses" and n % parts:
        raise ValueError(
            f"method {method!r} needs the sequence length N={n} divisible by {parts} "
            f"({'2 * ' if method == 'zigzag' else ''}world_size={world_size}); pad N or pick another world size"
        )


def split(method: str, x: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    """Per-rank shards of x (B, H, N, D) along N for `method` (see module doc)."""
    n = x.shape[2]
    check_divisible(method, n, world_size)
    if method == "ulysses":
        return list(x.split(shard_sizes(n, world_size), dim=2))
    if method == "zigzag":
        chunks = x.chunk(2 * world_size, dim=2)
        return [torch.cat([chunks[c] for c in rank_chunks("zigzag", r, world_size)], dim=2) for r in range(world_size)]
    return list(x.chunk(world_size, dim=2))


def join(method: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `split`: the full (B, H, N, D) tensor from the per-rank shards."""
    if method != "zigzag":
        return torch.cat(parts, dim=2)
    world_size = len(parts)
    chunks: list = [None] * (2 * world_size)
    for r, part in enumerate(parts):
        for c, piece in zip(rank_chunks("zigzag", r, world_size), part.chunk(2, dim=2)):
            chunks[c] = piece
    return torch.cat(chunks, dim=2)
