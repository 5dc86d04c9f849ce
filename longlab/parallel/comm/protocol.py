"""The Communicator protocol every sequence-parallel algorithm is written against, and its shared plumbing.

One rank's view: `rank`, `world_size`, and five operations on plain (non-differentiable) tensors:
- all_to_all(chunks)             chunks[j] goes to rank j; returns [chunk received from rank j for j in ranks];
- all_gather(x, groups)          returns the x of every member of this rank's group, in rank order;
- reduce_scatter(chunks, groups) chunks[i] goes to the i-th member of the group; returns the sum of what
                                 the members sent to this rank;
- ring_shift(x, shift)           send x to rank + shift, receive from rank - shift; returns a handle whose
                                 .wait() gives the received tensor (the transfer can overlap other work);
- barrier().
`groups` is a partition of all ranks into lists (every rank passes the same partition; None = one group).
Chunks of one call have the same shape on every rank. `tag` (a `Tag`) says what the transfer carries, for the
trace; `phase` is "forward" or "backward". Differentiable wrappers live in `comm.ops`.

Implementations: `SimGroup` (all ranks as threads of one process, alpha-beta clock; `sim_group.py`) and
`TorchGroup` (torch.distributed: gloo on CPU, nccl on CUDA; `torch_group.py`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch

from .trace import Event, Trace


@dataclass(frozen=True)
class Tag:
    """What a transfer carries, recorded into each `Event`.

    tensor: the moved tensor's name ("q", "k,v", "sparse k"...); what: a description template for people
    (`{src}` and `{dst}` are filled in); blocks: sequence chunk ids (a tuple), or "src"/"dst" for the sender's
    or the receiver's own shard; heads: the head block (an int), or "src"/"dst" likewise; branch: LongNet's
    dilated branch.
    """

    tensor: str = ""
    what: str = ""
    blocks: object = None
    heads: object = None
    branch: int | None = None

    def gradient(self) -> Tag:
        """The tag of this tensor's gradient travelling back."""
        return replace(self, what="grad of " + self.what if self.what else "")


NO_TAG = Tag()


@runtime_checkable
class Communicator(Protocol):
    rank: int
    world_size: int
    trace: Trace

    def all_to_all(self, chunks: Sequence[torch.Tensor], tag: Tag = NO_TAG, phase: str = "forward"
                   ) -> list[torch.Tensor]: ...

    def all_gather(self, x: torch.Tensor, groups=None, tag: Tag = NO_TAG, phase: str = "forward"
                   ) -> list[torch.Tensor]: ...

    def reduce_scatter(self, chunks: Sequence[torch.Tensor], groups=None, tag: Tag = NO_TAG,
                       phase: str = "forward") -> torch.Tensor: ...

    def ring_shift(self, x: torch.Tensor, shift: int = 1, tag: Tag = NO_TAG, phase: str = "forward"): ...

    def barrier(self) -> None: ...


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def check_partition(groups, world_size: int) -> list[tuple[int, ...]]:
    """Validate a partition of range(world_size) into rank lists; None means one group of everybody."""
    if groups is None:
        return [tuple(range(world_size))]
    parts = [tuple(int(r) for r in g) for g in groups]
    flat = sorted(r for g in parts for r in g)
    if flat != list(range(world_size)):
        raise ValueError(f"groups must partition ranks 0..{world_size - 1} (each exactly once), got {groups!r}")
    return parts


def _resolve(spec, src: int, dst: int):
    """Trace metadata given as "src"/"dst" (that rank's shard or head block) or as a literal value."""
    if spec == "src":
        return src
    if spec == "dst":
        return dst
    return spec


class Recorder:
    """Shared bookkeeping: the per-rank collective step counter and the recording of this rank's sends."""

    rank: int
    world_size: int
    trace: Trace

    def _init_recorder(self) -> None:
        self._step = 0

    def _next_step(self) -> int:
        step = self._step
        self._step += 1
        return step

    def _record(self, step: int, op: str, dst: int, size: int, tag: Tag, phase: str) -> None:
        if dst == self.rank:  # bytes a rank keeps for itself are never sent
            return
        src = self.rank
        blocks = _resolve(tag.blocks, src, dst)
        blocks = () if blocks is None else (blocks,) if isinstance(blocks, int) else tuple(blocks)
        what = tag.what.format(src=src, dst=dst) if tag.what else ""
        self._append(Event(step, op, src, dst, int(size), tag.tensor, phase, blocks, _resolve(tag.heads, src, dst),
                           tag.branch, what))

    def _append(self, event: Event) -> None:
        self.trace.events.append(event)

    def _my_group(self, groups) -> tuple[int, ...]:
        for g in check_partition(groups, self.world_size):
            if self.rank in g:
                return g
        raise AssertionError("unreachable: a partition contains every rank")
