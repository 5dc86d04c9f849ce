"""Differentiable communication: autograd.Functions around the Communicator operations.

The backward of a data movement is the reverse movement of the gradients:
- sequence->heads all-to-all  <->  heads->sequence all-to-all (each is the other's backward);
- all-gather                   ->  reduce-scatter of the gradient (every member's queries used my keys);
- ring shift by +1             ->  ring shift of the gradient by -1.
Each rank's autograd graph only holds its own tensors, exactly as with real processes; backward passes on
different ranks meet at the same collectives because every rank builds the same graph structure.
"""
from __future__ import annotations

import torch

from .comm import Communicator


def _seq_to_heads_raw(group: Communicator, x, what, phase):
    chunks = list(x.chunk(group.world_size, dim=1))
    return torch.cat(group.all_to_all(chunks, what=what, phase=phase, blocks="src", heads="dst"), dim=2)


def _heads_to_seq_raw(group: Communicator, y, what, phase):
    chunks = list(y.chunk(group.world_size, dim=2))
    return torch.cat(group.all_to_all(chunks, what=what, phase=phase, blocks="dst", heads="src"), dim=1)


class _SeqToHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, what):
        ctx.group, ctx.what = group, what
        return _seq_to_heads_raw(group, x, what, "forward")

    @staticmethod
    def backward(ctx, grad):
        return _heads_to_seq_raw(ctx.group, grad, "grad of " + ctx.what, "backward"), None, None


class _HeadsToSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, group, what):
        ctx.group, ctx.what = group, what
        return _heads_to_seq_raw(group, y, what, "forward")

    @staticmethod
    def backward(ctx, grad):
        return _seq_to_heads_raw(ctx.group, grad, "grad of " + ctx.what, "backward"), None, None


def seq_to_heads(group: Communicator, x: torch.Tensor, what: str = "") -> torch.Tensor:
    """All-to-all (B, H, s, D) sequence shard -> (B, H/P, P*s, D): all positions of this rank's H/P heads.

    Rank j receives head block j of every rank's shard (the block it keeps itself is not sent).
    """
    if x.shape[1] % group.world_size:
        raise ValueError(f"seq_to_heads needs heads ({x.shape[1]}) divisible by world_size ({group.world_size})")
    return _SeqToHeads.apply(x, group, what)


def heads_to_seq(group: Communicator, y: torch.Tensor, what: str = "") -> torch.Tensor:
    """The inverse all-to-all: (B, H/P, P*s, D) -> (B, H, s, D). heads_to_seq(seq_to_heads(x)) == x bit for bit."""
    if y.shape[2] % group.world_size:
        raise ValueError(f"heads_to_seq needs length ({y.shape[2]}) divisible by world_size ({group.world_size})")
    return _HeadsToSeq.apply(y, group, what)


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim, groups, what):
        ctx.group, ctx.dim, ctx.groups, ctx.what, ctx.size = group, dim, groups, what, x.shape[dim]
        return torch.cat(group.all_gather(x, groups, what=what, phase="forward", blocks="src"), dim=dim)

    @staticmethod
    def backward(ctx, grad):
        chunks = list(grad.split(ctx.size, dim=ctx.dim))
        summed = ctx.group.reduce_scatter(chunks, ctx.groups, what="grad of " + ctx.what, phase="backward",
                                          blocks="dst")
        return summed, None, None, None, None


def all_gather_cat(group: Communicator, x: torch.Tensor, dim: int, groups=None, what: str = "") -> torch.Tensor:
    """Concatenate (along `dim`, in rank order) the x of every member of this rank's group.

    Backward: reduce-scatter of the gradient within the same group.
    """
    return _AllGather.apply(x, group, dim, groups, what)


class _RingReceived(torch.autograd.Function):
    """Attaches autograd to a tensor that arrived by ring shift: its gradient travels back the other way."""

    @staticmethod
    def forward(ctx, sent, group, shift, what, blocks, box):
        ctx.group, ctx.shift, ctx.what, ctx.blocks = group, shift, what, blocks
        return box[0]

    @staticmethod
    def backward(ctx, grad):
        back = ctx.group.ring_shift(grad, -ctx.shift, what="grad of " + ctx.what, phase="backward",
                                    blocks=ctx.blocks).wait()
        return back, None, None, None, None, None


class RingPass:
    """A ring shift in flight: `.wait()` returns the received tensor, differentiable w.r.t. what was sent."""

    def __init__(self, group: Communicator, x: torch.Tensor, shift: int = 1, what: str = "", blocks=()):
        self._group, self._x, self._shift, self._what, self._blocks = group, x, shift, what, tuple(blocks)
        self._pending = group.ring_shift(x.detach(), shift, what=what, phase="forward", blocks=self._blocks)

    def wait(self) -> torch.Tensor:
        received = self._pending.wait()
        if not self._x.requires_grad:
            return received
        return _RingReceived.apply(self._x, self._group, self._shift, self._what, self._blocks, [received])


class _Anchor(torch.autograd.Function):
    """Identity on `out` that also takes tensors `out` does not use, so their backward (a collective) still
    runs on this rank and lines up with the other ranks (zero gradient flows into them)."""

    @staticmethod
    def forward(ctx, out, *unused):
        ctx.shapes = [(u.shape, u.dtype, u.device) for u in unused]
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        return (grad, *[torch.zeros(s, dtype=d, device=dev) for s, d, dev in ctx.shapes])


def anchor(out: torch.Tensor, *unused: torch.Tensor) -> torch.Tensor:
    """Return `out`, keeping `unused` tensors (e.g. a ring block a causal rank skipped) in the backward graph."""
    unused = tuple(u for u in unused if u is not None and u.requires_grad)
    return _Anchor.apply(out, *unused) if unused else out
