"""Communication volume per rank and alpha-beta time, per method and layer (forward), from formulas.

The formulas count what the algorithms in this package send, so `SimGroup`'s counted bytes must equal them
exactly (tests check that). Notation: P ranks, N positions, H query heads, Hk k/v heads, D / Dv head dims,
B batch, e bytes per element, h = H * D.

| method      | collectives per layer (forward)            | bytes sent per rank                       |
|-------------|--------------------------------------------|-------------------------------------------|
| ulysses     | 4 all-to-all (q, k, v, out)                | (P-1) B ceil(N/P) e (H D + 2 Hk' D + H Dv) / P |
| megatron    | 2 all-gather + 2 reduce-scatter (N x h)    | 4 (P-1)/P B N h e  (about 4 N h)          |
| ring/zigzag | P-1 ring shifts of the k/v block           | (P-1) B (N/P) Hk (D + Dv) e               |
| longnet     | per branch with w > N/P: all-gather of the | sum over those branches of                |
|             | sparse k and v within the segment's ranks  | (g-1) B H (N/P / r) (D + Dv) e, g = ranks in the segment |
Hk' = Hk when P divides Hk, else H (Ulysses repeats k/v heads). Alpha-beta (DESIGN.md sec. 3): a step where
a rank sends m messages of total n bytes costs m alpha + n beta; a step lasts as long as its slowest rank.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..attention.patterns import Dilated
from .dilated_dist import branch_plan
from .layout import check_divisible
from .trace import AlphaBeta

METHODS = ("ulysses", "megatron", "ring", "zigzag", "longnet")


@dataclass(frozen=True)
class CommStep:
    """One collective: per-rank message counts and bytes sent."""

    op: str
    messages: list[int]
    nbytes: list[int]
    what: str = ""


@dataclass(frozen=True)
class Workload:
    """Sizes of one attention layer's inputs (forward)."""

    seq_len: int
    heads: int
    head_dim: int = 64
    kv_heads: int | None = None
    value_dim: int | None = None
    batch: int = 1
    elem_size: int = 4
    opts: dict = field(default_factory=dict)

    @property
    def hk(self) -> int:
        return self.kv_heads or self.heads

    @property
    def dv(self) -> int:
        return self.value_dim or self.head_dim


def plan(method: str, world_size: int, work: Workload) -> list[CommStep]:
    """The collectives `method` issues for one layer's forward on `world_size` ranks."""
    p, w = world_size, work
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "megatron":
        check_divisible(method, w.seq_len, p)
    if method == "ulysses":
        s = -(-w.seq_len // p)
        hk = w.hk if w.hk % p == 0 else w.heads
        per_row = {"q": w.heads * w.head_dim, "k": hk * w.head_dim, "v": hk * w.dv, "out": w.heads * w.dv}
        return [
            CommStep("all_to_all", [p - 1] * p, [(p - 1) * w.batch * s * (n // p) * w.elem_size] * p, name)
            for name, n in per_row.items()
        ]
    if method == "megatron":
        n = w.batch * w.seq_len * w.heads * w.head_dim * w.elem_size  # activations N x h, split P ways
        chunk = n // p
        ops = ["all_gather", "reduce_scatter", "all_gather", "reduce_scatter"]  # attention block, MLP block
        return [CommStep(op, [p - 1] * p, [(p - 1) * chunk] * p, "activations") for op in ops]
    if method in ("ring", "zigzag"):
        block = w.batch * w.hk * (w.seq_len // p) * (w.head_dim + w.dv) * w.elem_size
        return [CommStep("ring_shift", [1] * p, [block] * p, f"k,v step {t + 1}") for t in range(p - 1)]
    pattern = Dilated(
        tuple(w.opts.get("segment_lengths", (2048, 4096, 8192))),
        tuple(w.opts.get("dilation_rates", (1, 2, 4))),
        False,
        w.opts.get("offsets", "reference"),
    )
    shard = w.seq_len // p
    steps = []
    for b in range(pattern.num_branches):
        kind, groups = branch_plan(pattern, b, w.seq_len, p)
        if kind == "local":
            continue
        rows = shard // pattern.dilation_rates[b]
        size_of = {r: len(g) for g in groups for r in g}
        for name, dim in (("k", w.head_dim), ("v", w.dv)):
            chunk = w.batch * w.heads * rows * dim * w.elem_size
            steps.append(
                CommStep(
                    "all_gather",
                    [size_of[r] - 1 for r in range(p)],
                    [(size_of[r] - 1) * chunk for r in range(p)],
                    f"sparse {name} branch {b}",
                )
            )
    return steps


def bytes_per_rank(method: str, world_size: int, work: Workload) -> list[int]:
    """Bytes each rank sends in one layer's forward."""
    totals = [0] * world_size
    for step in plan(method, world_size, work):
        totals = [t + b for t, b in zip(totals, step.nbytes)]
    return totals


def comm_time(method: str, world_size: int, work: Workload, model: AlphaBeta | None = None) -> float:
    """Alpha-beta seconds of one layer's forward communication (no overlap with compute assumed)."""
    model = model or AlphaBeta()
    return sum(
        max(model.step_time(m, n) for m, n in zip(step.messages, step.nbytes))
        for step in plan(method, world_size, work)
    )


def volume_table(methods, worlds, seq_lens, work: Workload) -> list[dict]:
    """Rows {method, world_size, seq_len, max_bytes_per_rank} for figures; skips invalid combinations."""
    rows = []
    for method in methods:
        for p in worlds:
            for n in seq_lens:
                sized = Workload(n, work.heads, work.head_dim, work.kv_heads, work.value_dim, work.batch,
                                 work.elem_size, work.opts)
                try:
                    if method == "ulysses" and work.heads % p:
                        continue
                    rows.append({"method": method, "world_size": p, "seq_len": n,
                                 "bytes": max(bytes_per_rank(method, p, sized))})
                except ValueError:
                    continue
    return rows


def longnet_options(seq_len: int, base: int = 64) -> dict:
    """The paper's geometric schedule up to N: segments base * 2^i (the last one = N), rates 2^i, so w/r is
    constant (= base) in every branch. With N/P >= the largest rate, every branch fits `branch_plan`."""
    if seq_len <= base:
        return {"segment_lengths": (seq_len,), "dilation_rates": (1,)}
    segments, rates, w, r = [], [], base, 1
    while w < seq_len:
        segments.append(w), rates.append(r)
        w, r = 2 * w, 2 * r
    segments.append(seq_len), rates.append(r)
    return {"segment_lengths": tuple(segments), "dilation_rates": tuple(rates)}
