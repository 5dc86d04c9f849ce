"""`simulate`: run a sequence-parallel method on P simulated ranks (threads of this process).

The output is differentiable w.r.t. the full q, k, v: its backward runs every rank's backward on its own
thread, so gradients also cross the simulated network (all-to-all back, reduce-scatter, reverse ring) and
those transfers are appended to the same trace with phase="backward".
"""
from __future__ import annotations

import torch

from ..comm.sim_group import SimWorld
from ..comm.trace import Trace
from .frontend import Job, apply_differentiable, prepare_job


class _Simulated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, world: SimWorld, job: Job, needs_grad: bool):
        leaves = [tuple(t.detach().requires_grad_(needs_grad) for t in part) for part in job.shards((q, k, v))]
        outs = world.run(job.program, leaves, grad_enabled=needs_grad)
        ctx.world, ctx.job, ctx.leaves, ctx.outs = world, job, leaves, outs
        return job.join(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, grad):
        world, job = ctx.world, ctx.job
        grads = job.split(grad.contiguous())

        def rank_backward(group, out, inputs, g):
            found = torch.autograd.grad(out, inputs, g, allow_unused=True)
            return [torch.zeros_like(x) if d is None else d for x, d in zip(inputs, found)]

        args = [(ctx.outs[r], ctx.leaves[r], grads[r]) for r in range(world.world_size)]
        per_rank = world.run(rank_backward, args)
        dq, dk, dv = (job.join(p[i] for p in per_rank) for i in range(3))
        return dq, dk, dv, None, None, None


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

    q (B, H, N, D), k/v (B, Hk, N, D/Dv): full inputs; they are cut into shards as the method's sharding says,
    each rank runs the method on its shard, and `out` (B, H, N, Dv) is glued back. `out` equals
    single-device attention (for "longnet": `longlab.dilated_attention` with the same options).
    method: a name in `methods.METHODS` ("ulysses", "ring", "zigzag", "longnet"; options and their defaults
        in each `MethodSpec.options`, e.g. LongNet's segment_lengths, dilation_rates, offsets), or a callable
        fn(group, q, k, v, causal, scale, **opts) (option `layout`: its sharding, default "contiguous").
    alpha, beta: the alpha-beta clock (s per message, s per byte); default `AlphaBeta()`.
    trace: `.events` (`Event`s: step, op, src, dst, nbytes, tensor, phase, blocks...), `.bytes_sent[rank]`,
        `.bytes_received[rank]`, `.time` (modelled seconds). Backward transfers are appended when `out.backward()` runs.
    """
    job = prepare_job(method, q, k, v, world_size, causal, scale, alpha, beta, opts)
    world = SimWorld(world_size, job.model, timeout=timeout)
    out = apply_differentiable(_Simulated, q, k, v, world, job)
    return out, world.trace
