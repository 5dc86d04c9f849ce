"""Communication volume per rank and alpha-beta time, per method and layer (forward), from the formulas
each method's spec gives (`MethodSpec.plan`, in `methods/`).

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

from .comm.trace import AlphaBeta
from .methods import ALL_METHODS, get_method
from .spec import CommStep, Workload

METHODS = ALL_METHODS


def plan(method: str, world_size: int, work: Workload) -> list[CommStep]:
    """The collectives `method` issues for one layer's forward on `world_size` ranks (sizes validated as a
    run would validate them; the method's default options fill in what `work.opts` leaves out)."""
    spec = get_method(method)
    opts = spec.validate(work.heads, work.seq_len, world_size, work.opts)
    return spec.plan(world_size, work, opts)


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
                    rows.append({"method": method, "world_size": p, "seq_len": n,
                                 "bytes": max(bytes_per_rank(method, p, sized))})
                except ValueError:
                    continue
    return rows
