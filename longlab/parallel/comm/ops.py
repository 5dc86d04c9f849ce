"""Differentiable communication: autograd.Functions around the Communicator operations.

The backward of a data movement is the reverse movement of the gradients:
- sequence->heads all-to-all  <->  heads->sequence all-to-all (each is the other's backward);
- all-gather                   ->  reduce-scatter of the gradient (every member's queries used my keys);
- ring shift by +1             ->  ring shift of the gradient by -1.
Each rank's autograd graph only holds its own tensors, exactly as with real processes; backward passes on
different ranks meet at the same collectives because every rank builds the same graph structure.
A gradient's transfer carries its tensor's `Tag` (`Tag.gradient()`) with phase "backward".
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .protocol import NO_TAG, Communicator, Tag


def _seq_to_heads_raw(group: Communicator, x, tag: Tag, phase):
    chunks = list(x.chunk(group.world_size, dim=1))
    return torch.cat(group.all_to_all(chunks, replace(tag, blocks="src", heads="dst"), phase), dim=2)


def _heads_to_seq_raw(group: Communicator, y, tag: Tag, phase):
    chunks = list(y.chunk(group.world_size, dim=2))
    return torch.cat(group.all_to_all(chunks, replace(tag, blocks="dst", heads="src"), phase), dim=1)


class _AllToAll(torch.autograd.Function):
    """Sequence -> heads (to_heads=True) or heads -> sequence; each direction is the other's backward."""

    @staticmethod
    def forward(ctx, x, group, tag, to_heads):
        ctx.group, ctx.tag, ctx.to_heads = group, tag, to_heads
        move = _seq_to_heads_raw if to_heads else _heads_to_seq_raw
        return move(group, x, tag, "forward")

    @staticmethod
    def backward(ctx, grad):
        move = _heads_to_seq_raw if ctx.to_heads else _seq_to_heads_raw
        return move(ctx.group, grad, ctx.tag.gradient(), "backward"), None, None, None


def seq_to_heads(group: Communicator, x: torch.Tensor, tag: Tag = NO_TAG) -> torch.Tensor:
    """All-to-all (B, H, s, D) sequence shard -> (B, H/P, P*s, D): all positions of this rank's H/P heads.

    Rank j receives head block j of every rank's shard (the block it keeps itself is not sent).
    """
    if x.shape[1] % group.world_size:
        raise ValueError(f"seq_to_heads needs heads ({x.shape[1]}) divisible by world_size ({group.world_size})")
    return _AllToAll.apply(x, group, tag, True)


def heads_to_seq(group: Communicator, y: torch.Tensor, tag: Tag = NO_TAG) -> torch.Tensor:
    """The inverse all-to-all: (B, H/P, P*s, D) -> (B, H, s, D). heads_to_seq(seq_to_heads(x)) == x bit for bit."""
    if y.shape[2] % group.world_size:
        raise ValueError(f"heads_to_seq needs length ({y.shape[2]}) divisible by world_size ({group.world_size})")
    return _AllToAll.apply(y, group, tag, False)


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, dim, groups, tag):
        ctx.group, ctx.dim, ctx.groups, ctx.tag, ctx.size = group, dim, groups, tag, x.shape[dim]
        return torch.cat(group.all_gather(x, groups, replace(tag, blocks="src"), "forward"), dim=dim)

    @staticmethod
    def backward(ctx, grad):
        chunks = list(grad.split(ctx.size, dim=ctx.dim))
        summed = ctx.group.reduce_scatter(chunks, ctx.groups, replace(ctx.tag.gradient(), blocks="dst"), "backward")
        return summed, None, None, None, None


def all_gather_cat(group: Communicator, x: torch.Tensor, dim: int, groups=None, tag: Tag = NO_TAG) -> torch.Tensor:
    """Concatenate (along `dim`, in rank order) the x of every member of this rank's group.

    Backward: reduce-scatter of the gradient within the same group.
    """
    return _AllGather.apply(x, group, dim, groups, tag)


class _RingReceived(torch.autograd.Function):
    """Attaches autograd to a tensor that arrived by ring shift: its gradient travels back the other way."""

    @staticmethod
    def forward(ctx, sent, group, shift, tag, box):
        ctx.group, ctx.shift, ctx.tag = group, shift, tag
        return box[0]

    @staticmethod
    def backward(ctx, grad):
        back = ctx.group.ring_shift(grad, -ctx.shift, ctx.tag.gradient(), "backward").wait()
        return back, None, None, None, None


class RingPass:
    """A ring shift in flight: `.wait()` returns the received tensor, differentiable w.r.t. what was sent."""

    def __init__(self, group: Communicator, x: torch.Tensor, shift: int = 1, tag: Tag = NO_TAG):
        self._group, self._x, self._shift, self._tag = group, x, shift, tag
        self._pending = group.ring_shift(x.detach(), shift, tag, "forward")

    def wait(self) -> torch.Tensor:
        received = self._pending.wait()
        if not self._x.requires_grad:
            return received
        return _RingReceived.apply(self._x, self._group, self._shift, self._tag, [received])


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
