"""DeepSpeed-Ulysses sequence parallelism (Jacobs et al. 2023, arXiv 2309.14509, sec. 3).

Each rank holds a shard of the sequence for all heads. An all-to-all turns that into all positions for H/P
heads, every rank runs ordinary attention on its heads, and an all-to-all turns the output back into a
sequence shard. Per rank and layer (forward) q, k, v and the output each cross the network once: about
4 N h (P-1)/P^2 elements sent per rank (the paper's "4Nh/P per link"), shrinking as P grows.
The head count limits P (H divisible by P).
"""
from __future__ import annotations

import torch

from ..attention.kernels import attend
from ..attention.validate import check_qkv, expand_kv_heads
from .comm import Communicator
from .layout import shard_sizes
from .ops import heads_to_seq, seq_to_heads


def check_ulysses(heads: int, world_size: int) -> None:
    if heads % world_size:
        raise ValueError(
            f"Ulysses splits heads across ranks: heads={heads} is not divisible by world_size={world_size}; "
            f"use a world size that divides the head count (P <= H) or ring attention"
        )


def ulysses_attention(
    group: Communicator,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    seq_len: int | None = None,
) -> torch.Tensor:
    """This rank's output shard of softmax(q k^T * scale) v over the whole sequence (Vaswani et al. eq. 1).

    q (B, H, n_r, D), k/v (B, Hk, n_r, D/Dv): this rank's positions of the sequence, shards laid out by
    `layout.shard_sizes(seq_len, P)` (balanced, contiguous). Returns (B, H, n_r, Dv).
    seq_len: total N (default n_r * P). When P does not divide N every shard is zero-padded to ceil(N/P)
    before the all-to-all and the padding rows are dropped before attention: never attended.
    Grouped-query k/v heads travel as they are when P divides Hk, else they are repeated to H heads first.
    """
    if q.shape[2] or q.dim() != 4:  # a rank may hold no positions at all when N < P
        check_qkv(q, k, v)
    world, rank = group.world_size, group.rank
    heads = q.shape[1]
    check_ulysses(heads, world)
    n_local = q.shape[2]
    n = seq_len if seq_len is not None else n_local * world
    sizes = shard_sizes(n, world)
    if sizes[rank] != n_local:
        raise ValueError(
            f"rank {rank} holds {n_local} positions but seq_len={n} over {world} ranks gives {sizes[rank]}"
        )
    if k.shape[1] % world:
        k, v = expand_kv_heads(k, heads), expand_kv_heads(v, heads)
    padded = -(-n // world)

    def pad(x):
        return torch.nn.functional.pad(x, (0, 0, 0, padded - x.shape[2])) if x.shape[2] < padded else x

    real = torch.cat([torch.arange(sizes[j], device=q.device) + j * padded for j in range(world)])
    full = []
    for name, x in (("q", q), ("k", k), ("v", v)):
        gathered = seq_to_heads(group, pad(x), what=name + " seq {src} -> heads of rank {dst}")
        full.append(gathered.index_select(2, real) if n != padded * world else gathered)
    out, _ = attend(*full, causal=causal, scale=scale)  # (B, H/P, N, Dv): whole sequence, this rank's heads
    if n != padded * world:
        out = out.new_zeros(*out.shape[:2], padded * world, out.shape[-1]).index_copy(2, real, out)
    back = heads_to_seq(group, out, what="out heads {src} -> seq of rank {dst}")
    return back[:, :, :n_local]
