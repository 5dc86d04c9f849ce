"""Ring attention (Liu et al. 2023, arXiv 2310.01889; blockwise form of Rabe & Staats / FlashAttention).

Each rank keeps its query block and passes its key/value block around the ring: P - 1 shifts, after which
every query block has met every key block. Partial results are merged by log-sum-exp (`merge`), so the
output is exact. Per rank and layer (forward): (P-1) k/v blocks sent, i.e. 2 (P-1)/P N h elements, the same
as an all-gather of k and v but point to point, so the next block's transfer overlaps the current block's
compute (on `TorchGroup` the isend/irecv is started before the compute and waited for after it).

Causal: with `layout="contiguous"` rank r's queries see k/v blocks 0..r, so rank P-1 does P times the work
of rank 0. `layout="zigzag"` gives rank r chunks r and 2P-1-r of 2P chunks, so every rank does the same
number of causal query-key pairs (striped/zigzag balancing, Brandon et al. 2023, arXiv 2311.09431).
"""
from __future__ import annotations

import torch

from ..attention.kernels import attend
from ..attention.merge import merge
from ..attention.validate import check_qkv
from .comm import Communicator
from .layout import rank_chunks
from .ops import RingPass, anchor


def block_visibility(query_chunk: int, key_chunk: int, causal: bool) -> str:
    """'full', 'diagonal' (causal square block) or 'none' for a pair of sequence chunks."""
    if not causal or key_chunk < query_chunk:
        return "full"
    return "diagonal" if key_chunk == query_chunk else "none"


def ring_attention(
    group: Communicator,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    layout: str = "contiguous",
    overlap: bool = True,
) -> torch.Tensor:
    """This rank's output of softmax(q k^T * scale) v over the whole sequence, by passing k/v around the ring.

    q (B, H, n, D), k/v (B, Hk, n, D/Dv): this rank's chunks in `layout` order (see `layout.split`; with
    "zigzag" the n positions are chunk r then chunk 2P-1-r). Returns (B, H, n, Dv). Causal is exact with
    either layout. Block merge: paper eq. for blockwise softmax, out = sum_i exp(lse_i - lse) out_i.
    overlap: start the next block's transfer before computing on the current one (default); False waits
    for it first (for measuring what the overlap buys).
    """
    check_qkv(q, k, v)
    world, rank = group.world_size, group.rank
    mine = rank_chunks(layout, rank, world)
    if q.shape[2] % len(mine) or q.shape[2] != k.shape[2]:
        raise ValueError(f"ring attention needs q and k/v with the same local length divisible by {len(mine)}")
    chunk = q.shape[2] // len(mine)
    d_k = k.shape[-1]
    q_parts = q.split(chunk, dim=2)
    kv = torch.cat([k, v], dim=-1)  # one message per step
    partials: list[list] = [[] for _ in mine]
    skipped_last = None
    for step in range(world):
        src = (rank - step) % world
        theirs = rank_chunks(layout, src, world)
        pending = None
        if step < world - 1:  # start the next transfer first: it runs while we compute on this block
            pending = RingPass(group, kv, what=f"k,v chunks {theirs} (rank {{src}} -> {{dst}})", blocks=theirs)
        current = kv
        if pending is not None and not overlap:
            kv = pending.wait()
            pending = None
        used = False
        for qi, q_chunk in enumerate(mine):
            for kj, k_chunk in enumerate(theirs):
                seen = block_visibility(q_chunk, k_chunk, causal)
                if seen == "none":
                    continue
                block = current[:, :, kj * chunk : (kj + 1) * chunk]
                partials[qi].append(
                    attend(q_parts[qi], block[..., :d_k], block[..., d_k:], causal=seen == "diagonal", scale=scale)
                )
                used = True
        if pending is not None:
            kv = pending.wait()
        elif step == world - 1 and not used:
            skipped_last = current
    out = torch.cat([merge(p)[0] for p in partials], dim=2)
    return anchor(out, skipped_last)


def causal_pairs_per_rank(seq_len: int, world_size: int, layout: str) -> list[int]:
    """Causal query-key pairs each rank scores (counted block by block, the work `ring_attention` does)."""
    chunks = world_size * (2 if layout == "zigzag" else 1)
    c = seq_len // chunks
    counts = []
    for rank in range(world_size):
        total = 0
        for q_chunk in rank_chunks(layout, rank, world_size):
            for src in range(world_size):
                for k_chunk in rank_chunks(layout, src, world_size):
                    seen = block_visibility(q_chunk, k_chunk, True)
                    total += c * c if seen == "full" else c * (c + 1) // 2 if seen == "diagonal" else 0
        counts.append(total)
    return counts
