"""DeepSpeed-Ulysses sequence parallelism (Jacobs et al. 2023, arXiv 2309.14509, sec. 3).

Each rank holds a shard of the sequence for all heads. An all-to-all turns that into all positions for H/P
heads, every rank runs ordinary attention on its heads, and an all-to-all turns the output back into a
sequence shard. Per rank and layer (forward) q, k, v and the output each cross the network once: about
4 N h (P-1)/P^2 elements sent per rank (the paper's "4Nh/P per link"), shrinking as P grows.
The head count limits P (H divisible by P).
"""
from __future__ import annotations

import torch

from ...attention.kernels import attend
from ...attention.validate import check_qkv, expand_kv_heads
from ..comm.ops import heads_to_seq, seq_to_heads
from ..comm.protocol import Communicator, Tag
from ..sharding import shard_sizes
from ..spec import CommStep, MethodSpec, Workload


def check_ulysses(heads: int, seq_len: int, world_size: int, opts: dict | None = None) -> None:
    """Ulysses splits heads across ranks: P must divide H."""
    if heads % world_size:
        raise ValueError(
            f"Ulysses splits heads across ranks: heads={heads} is not divisible by world_size={world_size}; "
            f"use a world size that divides the head count (P <= H) or ring attention"
        )


def ulysses_attention(group: Communicator, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                      scale: float | None = None, seq_len: int | None = None) -> torch.Tensor:
    """This rank's output shard of softmax(q k^T * scale) v over the whole sequence (Vaswani et al. eq. 1).

    q (B, H, n_r, D), k/v (B, Hk, n_r, D/Dv): this rank's positions of the sequence, shards laid out by
    `sharding.shard_sizes(seq_len, P)` (balanced, contiguous). Returns (B, H, n_r, Dv).
    seq_len: total N (default n_r * P). When P does not divide N every shard is zero-padded to ceil(N/P)
    before the all-to-all and the padding rows are dropped before attention: never attended.
    Grouped-query k/v heads travel as they are when P divides Hk, else they are repeated to H heads first.
    """
    if q.shape[2] or q.dim() != 4:  # a rank may hold no positions at all when N < P
        check_qkv(q, k, v)
    world, rank = group.world_size, group.rank
    heads = q.shape[1]
    check_ulysses(heads, q.shape[2], world)
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
        gathered = seq_to_heads(group, pad(x), Tag(name, name + " seq {src} -> heads of rank {dst}"))
        full.append(gathered.index_select(2, real) if n != padded * world else gathered)
    out, _ = attend(*full, causal=causal, scale=scale)  # (B, H/P, N, Dv): whole sequence, this rank's heads
    if n != padded * world:
        out = out.new_zeros(*out.shape[:2], padded * world, out.shape[-1]).index_copy(2, real, out)
    back = heads_to_seq(group, out, Tag("out", "out heads {src} -> seq of rank {dst}"))
    return back[:, :, :n_local]


def plan(world_size: int, w: Workload, opts: dict) -> list[CommStep]:
    """Four all-to-alls (q, k, v, out): (P-1) B ceil(N/P) e (H D + 2 Hk' D + H Dv) / P bytes per rank, with
    Hk' = Hk when P divides Hk, else H (k/v heads are repeated first)."""
    p = world_size
    s = -(-w.seq_len // p)
    hk = w.hk if w.hk % p == 0 else w.heads
    per_row = {"q": w.heads * w.head_dim, "k": hk * w.head_dim, "v": hk * w.dv, "out": w.heads * w.dv}
    return [CommStep("all_to_all", [p - 1] * p, [(p - 1) * w.batch * s * (n // p) * w.elem_size] * p, name)
            for name, n in per_row.items()]


SPEC = MethodSpec(
    name="ulysses",
    summary="DeepSpeed-Ulysses: all-to-all from sequence shards to head shards and back (P must divide H)",
    sharding="balanced",
    plan=plan,
    attention=ulysses_attention,
    check=check_ulysses,
)
