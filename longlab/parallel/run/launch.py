"""`launch`: the same methods on real processes (torch.distributed, gloo on CPU), one process per rank
(`processes.run_world`: ranks fork from a clean fork server; a rank that raises, dies or hangs ends the
launch with a clear error).

Autograd: when q, k or v require grad, `out` is differentiable; its backward launches the world again,
each rank recomputes its forward and runs its backward (all-to-all back, reduce-scatter, reverse ring) on
its shard of the output gradient (recomputation, as activation checkpointing does).
"""
from __future__ import annotations

import torch

from ...checks import positive_number
from ..comm.trace import Trace
from .frontend import Job, apply_differentiable, prepare_job
from .processes import context, run_world

BACKENDS = ("gloo", "nccl", "mpi")


def _trace_from(payloads, world_size, phase=None) -> Trace:
    events = sorted((e for p in payloads for e in p["events"]), key=lambda e: (e.step, e.src, e.dst))
    if phase is not None:
        events = [e for e in events if e.phase == phase]
    times = [p["time"] for p in payloads]
    return Trace(world_size, events=events, time=max(times), measured=True, rank_times=times)


class _Launched(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, job: Job, run: dict, needs_grad: bool):
        ctx.job, ctx.run = job, run
        ctx.save_for_backward(q, k, v)
        payloads = run_world(job.program, job.shards((q, k, v)), None, **run["settings"])
        run["trace"] = _trace_from(payloads, job.world_size)
        run["trace"].model = job.model
        return job.join(p["out"] for p in payloads)

    @staticmethod
    def backward(ctx, grad):
        job, run = ctx.job, ctx.run
        q, k, v = ctx.saved_tensors
        payloads = run_world(job.program, job.shards((q.detach(), k.detach(), v.detach())),
                             job.split(grad.contiguous()), **run["settings"])
        backward_trace = _trace_from(payloads, job.world_size, phase="backward")
        run["trace"].events.extend(backward_trace.events)
        run["trace"].backward_time = max(p["time"] for p in payloads)
        dq, dk, dv = (job.join(p["grads"][i] for p in payloads) for i in range(3))
        return dq, dk, dv, None, None, None


def launch(
    method,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    world_size: int,
    backend: str = "gloo",
    causal: bool = False,
    scale: float | None = None,
    timeout: float = 60.0,
    start_method: str = "forkserver",
    alpha: float | None = None,
    beta: float | None = None,
    **opts,
) -> tuple[torch.Tensor, Trace]:
    """`simulate`, but on `world_size` real processes -> (out, trace) with the same trace fields.

    q (B, H, N, D), k/v (B, Hk, N, D/Dv) full inputs (CPU); out (B, H, N, Dv). trace.time is the measured
    wall-clock seconds of the slowest rank (between two barriers); trace.rank_times per rank; trace.model
    holds alpha/beta (e.g. from `calibrate`) for comparing against `trace.modelled_time()`.
    timeout: seconds for the whole run; a rank that raises, dies or hangs gives RuntimeError/TimeoutError.
    start_method: "forkserver" (default: ranks fork from a clean, warm helper process) or "spawn" (every
        rank imports torch itself: seconds per launch). A callable `method` must be picklable (module level).
        As with any non-fork start, a script that calls `launch` needs an `if __name__ == "__main__":` guard
        (each rank re-imports the main module).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs CUDA GPUs (one per rank) and none is visible; use backend='gloo'")
    positive_number("timeout", timeout, "s")
    context(start_method)
    job = prepare_job(method, q, k, v, world_size, causal, scale, alpha, beta, opts)
    run = {"settings": {"backend": backend, "timeout": float(timeout), "start_method": start_method}, "trace": None}
    out = apply_differentiable(_Launched, q, k, v, job, run)
    return out, run["trace"]
