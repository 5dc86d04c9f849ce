"""`simulate`: run a sequence-parallel method on P simulated ranks (threads of this process).

The output is differentiable w.r.t. the full q, k, v: its backward runs every rank's backward on its own
thread, so gradients also cross the simulated network (all-to-all back, reduce-scatter, reverse ring) and
those transfers are appended to the same trace with phase="backward".
"""
from __future__ import annotations

import torch

from . import layout
from .program import prepare, rank_program, shards
from .sim_group import SimWorld
from .trace import AlphaBeta, Trace


class _Simulated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, world, layout_name, program, needs_grad):
        per_rank = shards(layout_name, (q, k, v), world.world_size)
        leaves = [tuple(t.detach().requires_grad_(needs_grad) for t in part) for part in per_rank]
        outs = world.run(program, leaves, grad_enabled=needs_grad)
        ctx.world, ctx.layout_name, ctx.leaves, ctx.outs = world, layout_name, leaves, outs
        return layout.join(layout_name, [o.detach() for o in outs])

    @staticmethod
    def backward(ctx, grad):
        world, name = ctx.world, ctx.layout_name
        grads = layout.split(name, grad.contiguous(), world.world_size)

        def rank_backward(group, out, inputs, g):
            found = torch.autograd.grad(out, inputs, g, allow_unused=True)
            return [torch.zeros_like(x) if d is None else d for x, d in zip(inputs, found)]

        args = [(ctx.outs[r], ctx.leaves[r], grads[r]) for r in range(world.world_size)]
        per_rank = world.run(rank_backward, args)
        dq, dk, dv = (layout.join(name, [p[i] for p in per_rank]) for i in range(3))
        return dq, dk, dv, None, None, None, None


def simulate(
    method,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    world_size: int,
    causal: bool = False,
    scale: float | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    timeout: float = 60.0,
    **opts,
) -> tuple[torch.Tensor, Trace]:
    """Sequence-parallel attention on `world_size` simulated ranks -> (out, trace).

    q (B, H, N, D), k/v (B, Hk, N, D/Dv): full inputs; they are cut into shards as `layout.split` says,
    each rank runs the method on its shard, and `out` (B, H, N, Dv) is glued back. `out` equals
    single-device attention (for "longnet": `longlab.dilated_attention` with the same options).
    method: "ulysses", "ring", "zigzag" (ring with the zigzag causal layout) or "longnet" (opts:
        segment_lengths, dilation_rates, offsets); or a callable fn(group, q, k, v, causal, scale, **opts).
    alpha, beta: the alpha-beta clock (s per message, s per byte); default `AlphaBeta()`.
    trace: `.events` (step, op, src, dst, nbytes, what, phase), `.bytes_sent[rank]`, `.bytes_received[rank]`,
        `.time` (modelled seconds). Backward transfers are appended when `out.backward()` runs.
    """
    opts = dict(opts)
    layout_name = prepare(method, q, k, v, world_size, opts)
    base = AlphaBeta()
    model = AlphaBeta(base.alpha if alpha is None else alpha, base.beta if beta is None else beta)
    world = SimWorld(world_size, model, timeout=timeout)
    program = rank_program(method, causal, scale, q.shape[2], opts)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad:
        out = _Simulated.apply(q, k, v, world, layout_name, program, True)
    else:
        with torch.no_grad():
            out = _Simulated.apply(q, k, v, world, layout_name, program, False)
    return out, world.trace
