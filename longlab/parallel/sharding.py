"""How a full (B, H, N, D) sequence is cut into per-rank shards along N, and glued back.

Three shardings (a method's spec names one):
- "balanced": P contiguous shards whose lengths differ by at most one (any N; Ulysses);
- "contiguous": P equal contiguous shards (N divisible by P; ring, LongNet);
- "zigzag": 2P equal chunks, rank r holds chunks r and 2P-1-r (balanced causal work, Brandon et al. 2023).
"""
from __future__ import annotations

import torch

SHARDINGS = ("balanced", "contiguous", "zigzag")


def _check_name(sharding: str) -> None:
    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {SHARDINGS}, got {sharding!r}")


def shard_sizes(n: int, world_size: int) -> list[int]:
    """Balanced contiguous shard lengths: the first N mod P ranks get one extra position."""
    return [n // world_size + (1 if r < n % world_size else 0) for r in range(world_size)]


def num_chunks(sharding: str, world_size: int) -> int:
    """Sequence chunks the sharding cuts N into (chunk ids are what trace events' `blocks` refer to)."""
    _check_name(sharding)
    return 2 * world_size if sharding == "zigzag" else world_size


def rank_chunks(sharding: str, rank: int, world_size: int) -> list[int]:
    """Chunk ids a rank holds: [rank] of P chunks, or [rank, 2P-1-rank] of 2P chunks for zigzag."""
    _check_name(sharding)
    return [rank, 2 * world_size - 1 - rank] if sharding == "zigzag" else [rank]


def check_divisible(sharding: str, n: int, world_size: int, method: str = "") -> None:
    """N must split into equal chunks (not needed for "balanced"); `method` names the caller in the message."""
    parts = num_chunks(sharding, world_size)
    if sharding != "balanced" and n % parts:
        who = f"method {method!r}" if method else f"sharding {sharding!r}"
        raise ValueError(
            f"{who} needs the sequence length N={n} divisible by {parts} "
            f"({'2 * ' if sharding == 'zigzag' else ''}world_size={world_size}); pad N or pick another world size"
        )


def local_length(sharding: str, n: int, world_size: int, rank: int) -> int:
    """Positions rank `rank` holds."""
    return shard_sizes(n, world_size)[rank] if sharding == "balanced" else n // world_size


def split(sharding: str, x: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    """Per-rank shards of x (B, H, N, D) along N (see module doc)."""
    n = x.shape[2]
    check_divisible(sharding, n, world_size)
    if sharding == "balanced":
        return list(x.split(shard_sizes(n, world_size), dim=2))
    if sharding == "zigzag":
        chunks = x.chunk(2 * world_size, dim=2)
        return [torch.cat([chunks[c] for c in rank_chunks("zigzag", r, world_size)], dim=2) for r in range(world_size)]
    return list(x.chunk(world_size, dim=2))


def join(sharding: str, parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of `split`: the full (B, H, N, D) tensor from the per-rank shards."""
    _check_name(sharding)
    if sharding != "zigzag":
        return torch.cat(parts, dim=2)
    world_size = len(parts)
    chunks: list = [None] * (2 * world_size)
    for r, part in enumerate(parts):
        for c, piece in zip(rank_chunks("zigzag", r, world_size), part.chunk(2, dim=2)):
            chunks[c] = piece
    return torch.cat(chunks, dim=2)
