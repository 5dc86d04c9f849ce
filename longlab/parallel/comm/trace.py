"""What a communicator records: every transfer (who sent how many bytes to whom, at which step) and a clock.

Both worlds fill the same `Trace`: `SimGroup` with the alpha-beta model's time, `TorchGroup` (real processes)
with measured wall-clock seconds. A rank never records bytes it keeps for itself (its own all-to-all chunk).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """One point-to-point transfer inside a collective, in structured fields (figures read the fields; `what`
    is only the human-readable line).

    step: index of the collective call (the same on every rank, since all ranks call collectives in order);
    op: "all_to_all", "all_gather", "reduce_scatter" or "ring_shift"; src/dst: ranks; nbytes: payload size;
    tensor: which tensor moved ("q", "k", "v", "out", "k,v" for ring blocks, "sparse k" / "sparse v" for
    LongNet's sparsified keys and values); phase: "forward" or "backward" (then it is that tensor's gradient);
    blocks: the sequence chunks the payload covers (chunk ids of the method's sharding: rank shards, or the 2P
    zigzag chunks); head_block: the block of H/P heads it covers (None = all); branch: LongNet's dilated
    branch (None for other methods); what: a description for people, e.g. "k,v chunks [3] (rank 2 -> 3)".
    """

    step: int
    op: str
    src: int
    dst: int
    nbytes: int
    tensor: str = ""
    phase: str = "forward"
    blocks: tuple[int, ...] = ()
    head_block: int | None = None
    branch: int | None = None
    what: str = ""


@dataclass(frozen=True)
class AlphaBeta:
    """The alpha-beta cost model: a message of m bytes costs alpha + m * beta seconds (alpha: latency in s,
    beta: inverse bandwidth in s/byte). Defaults: ~5 us latency, ~10 GB/s (a fast node-local link)."""

    alpha: float = 5e-6
    beta: float = 1e-10

    def step_time(self, messages: int, nbytes: int) -> float:
        return messages * self.alpha + nbytes * self.beta


@dataclass
class Trace:
    """Transfers recorded by a communicator, plus totals.

    events: list of `Event`; time: seconds (modelled by the alpha-beta clock in `SimGroup`, measured on real
    processes); world_size: number of ranks; model: the `AlphaBeta` used for modelled times.
    """

    world_size: int
    events: list[Event] = field(default_factory=list)
    time: float = 0.0
    model: AlphaBeta = field(default_factory=AlphaBeta)
    measured: bool = False
    rank_times: list[float] | None = None
    backward_time: float | None = None  # measured seconds of the backward launch (real processes only)

    def select(self, phase: str | None = None) -> list[Event]:
        return [e for e in self.events if phase is None or e.phase == phase]

    def _per_rank(self, attr: str, phase: str | None) -> list[int]:
        totals = [0] * self.world_size
        for e in self.select(phase):
            totals[getattr(e, attr)] += e.nbytes
        return totals

    @property
    def bytes_sent(self) -> list[int]:
        """Bytes each rank sent (all recorded phases; see `sent(phase)`)."""
        return self._per_rank("src", None)

    @property
    def bytes_received(self) -> list[int]:
        """Bytes each rank received (all recorded phases)."""
        return self._per_rank("dst", None)

    def sent(self, phase: str | None = "forward") -> list[int]:
        return self._per_rank("src", phase)

    def received(self, phase: str | None = "forward") -> list[int]:
        return self._per_rank("dst", phase)

    @property
    def steps(self) -> list[int]:
        return sorted({e.step for e in self.events})

    def at_step(self, step: int) -> list[Event]:
        return [e for e in self.events if e.step == step]

    def modelled_time(self, model: AlphaBeta | None = None, phase: str | None = None) -> float:
        """Alpha-beta time: per step, the slowest rank's (messages * alpha + bytes * beta), summed over steps."""
        return step_clock(self.select(phase), model or self.model)

    def summary(self) -> str:
        kind = "measured" if self.measured else "modelled"
        sent = ", ".join(f"{b:,}" for b in self.bytes_sent)
        return (f"{len(self.events)} transfers in {len(self.steps)} steps; bytes sent per rank [{sent}]; "
                f"{kind} {self.time:.3g} s")

    def __repr__(self) -> str:
        return f"Trace(world_size={self.world_size}, {self.summary()})"


def step_clock(events: Iterable[Event], model: AlphaBeta) -> float:
    """Sum over steps of max over ranks of (messages * alpha + bytes * beta) (ranks of one step run in parallel)."""
    messages: dict[tuple[int, int], int] = defaultdict(int)
    nbytes: dict[tuple[int, int], int] = defaultdict(int)
    for e in events:
        messages[(e.step, e.src)] += 1
        nbytes[(e.step, e.src)] += e.nbytes
    per_step: dict[int, float] = defaultdict(float)
    for key, count in messages.items():
        per_step[key[0]] = max(per_step[key[0]], model.step_time(count, nbytes[key]))
    return sum(per_step.values())
