"""Who holds which blocks after each step, replayed from a recorded trace (for figures and teaching).

The sequence is cut into the chunks of the method's sharding (P rank shards, or 2P for zigzag). Before step 0 every rank
holds q, k, v of its own chunks. Then each forward event adds what it moved to the receiver: a ring shift
replaces the k/v block received before it (ring attention keeps one visiting block at a time); all-to-all
and all-gather results accumulate. Labels: the event's tensor plus its head block when only some heads moved
("q[h1]" = q for head block 1 of H/P heads).
"""
from __future__ import annotations

from dataclasses import dataclass

from .comm.trace import Event, Trace
from .methods import get_method
from .sharding import num_chunks, rank_chunks


@dataclass(frozen=True)
class Stage:
    """Holdings after `step` (None = before any transfer): held[rank][chunk] = set of labels; own[rank] =
    chunks the rank started with; events = the transfers of this step; new[rank][chunk] = labels it just got."""

    step: int | None
    held: list[list[frozenset]]
    own: list[list[int]]
    events: list[Event]
    new: list[list[frozenset]]


def _label(event: Event) -> str:
    return event.tensor if event.head_block is None else f"{event.tensor}[h{event.head_block}]"


def holdings(trace: Trace, method: str, phase: str = "forward") -> list[Stage]:
    """Stage 0 (own blocks) followed by one `Stage` per recorded step of `phase`."""
    world = trace.world_size
    sharding = get_method(method).sharding
    chunks = num_chunks(sharding, world)
    own = [rank_chunks(sharding, r, world) for r in range(world)]
    held = [[set() for _ in range(chunks)] for _ in range(world)]
    for r in range(world):
        for c in own[r]:
            held[r][c] |= {"q", "k", "v"}
    stages = [Stage(None, _freeze(held), own, [], _freeze([[set() for _ in range(chunks)] for _ in range(world)]))]
    events = trace.select(phase)
    for step in sorted({e.step for e in events}):
        now = [e for e in events if e.step == step]
        new = [[set() for _ in range(chunks)] for _ in range(world)]
        for e in now:
            if e.op == "ring_shift":  # the previous visitor leaves
                for c in range(chunks):
                    if c not in own[e.dst]:
                        held[e.dst][c] -= {"k,v"}
            for c in e.blocks:
                held[e.dst][c].add(_label(e))
                new[e.dst][c].add(_label(e))
        stages.append(Stage(step, _freeze(held), own, now, _freeze(new)))
    return stages


def _freeze(grid):
    return [[frozenset(cell) for cell in row] for row in grid]
