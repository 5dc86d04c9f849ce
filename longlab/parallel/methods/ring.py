"""Ring attention (Liu et al. 2023, arXiv 2310.01889; blockwise form of Rabe & Staats / FlashAttention).

Each rank keeps its query block and passes its key/value block around the ring: P - 1 shifts, after which
every query block has met every key block. Partial results are merged by log-sum-exp (`merge`), so the
output is exact. Per rank and layer (forward): (P-1) k/v blocks sent, i.e. 2 (P-1)/P N h elements, the same
as an all-gather of k and v but point to point, so the next block's transfer overlaps the current block's
compute (on `TorchGroup` the isend/irecv is started before the compute and waited for after it).

Causal: with `sharding="contiguous"` rank r's queries see k/v blocks 0..r, so rank P-1 does P times the work
of rank 0. `sharding="zigzag"` gives rank r chunks r and 2P-1-r of 2P chunks, so every rank does the same
number of causal query-key pairs (striped/zigzag balancing, Brandon et al. 2023, arXiv 2311.09431).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ...attention.kernels import attend
from ...attention.merge import merge
from ...attention.validate import check_qkv
from ..comm.ops import RingPass, anchor
from ..comm.protocol import Communicator, Tag
from ..sharding import rank_chunks
from ..spec import CommStep, MethodSpec, Workload


def block_visibility(query_chunk: int, key_chunk: int, causal: bool) -> str:
    """'full', 'diagonal' (causal square block) or 'none' for a pair of sequence chunks."""
    if not causal or key_chunk < query_chunk:
        return "full"
    return "diagonal" if key_chunk == query_chunk else "none"


def ring_attention(group: Communicator, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                   scale: float | None = None, sharding: str = "contiguous", overlap: bool = True) -> torch.Tensor:
    """This rank's output of softmax(q k^T * scale) v over the whole sequence, by passing k/v around the ring.

    q (B, H, n, D), k/v (B, Hk, n, D/Dv): this rank's chunks in `sharding` order (see `sharding.split`; with
    "zigzag" the n positions are chunk r then chunk 2P-1-r). Returns (B, H, n, Dv). Causal is exact with
    either sharding. Block merge: paper eq. for blockwise softmax, out = sum_i exp(lse_i - lse) out_i.
    overlap: start the next block's transfer before computing on the current one (default); False waits
    for it first (for measuring what the overlap buys).
    """
    check_qkv(q, k, v)
    world, rank = group.world_size, group.rank
    mine = rank_chunks(sharding, rank, world)
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
        theirs = rank_chunks(sharding, src, world)
        pending = None
        if step < world - 1:  # start the next transfer first: it runs while we compute on this block
            tag = Tag("k,v", f"k,v chunks {theirs} (rank {{src}} -> {{dst}})", tuple(theirs))
            pending = RingPass(group, kv, tag=tag)
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


def causal_pairs_per_rank(seq_len: int, world_size: int, sharding: str) -> list[int]:
    """Causal query-key pairs each rank scores (counted block by block, the work `ring_attention` does)."""
    chunks = world_size * (2 if sharding == "zigzag" else 1)
    c = seq_len // chunks
    counts = []
    for rank in range(world_size):
        total = 0
        for q_chunk in rank_chunks(sharding, rank, world_size):
            for src in range(world_size):
                for k_chunk in rank_chunks(sharding, src, world_size):
                    seen = block_visibility(q_chunk, k_chunk, True)
                    total += c * c if seen == "full" else c * (c + 1) // 2 if seen == "diagonal" else 0
        counts.append(total)
    return counts


def plan(world_size: int, w: Workload, opts: dict) -> list[CommStep]:
    """P-1 ring shifts of this rank's k/v block: (P-1) B (N/P) Hk (D + Dv) e bytes per rank."""
    p = world_size
    block = w.batch * w.hk * (w.seq_len // p) * (w.head_dim + w.dv) * w.elem_size
    return [CommStep("ring_shift", [1] * p, [block] * p, f"k,v step {t + 1}") for t in range(p - 1)]


def _program(sharding: str):
    def attention(group, q, k, v, *, causal, scale, seq_len, overlap):
        return ring_attention(group, q, k, v, causal=causal, scale=scale, sharding=sharding, overlap=overlap)

    return attention


RING = MethodSpec(
    name="ring",
    summary="ring attention: k/v blocks travel around the ring, partial results merged by log-sum-exp",
    sharding="contiguous",
    plan=plan,
    attention=_program("contiguous"),
    options={"overlap": True},
)

ZIGZAG = replace(
    RING,
    name="zigzag",
    summary="ring attention with the zigzag sharding (rank r holds chunks r and 2P-1-r): balanced causal work",
    sharding="zigzag",
    attention=_program("zigzag"),
    same_volume_as="ring",
)
