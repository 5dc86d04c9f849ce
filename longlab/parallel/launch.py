"""`launch`: the same methods on real processes (torch.distributed, gloo on CPU), one process per rank.

Ranks are forked (a fork start costs ~0.1 s; spawn/torchrun 4-7 s), each sets one intra-op thread, joins a
gloo group through a TCP store on a free loopback port, runs the method on its shard and sends its output,
its recorded transfers and its measured time back. The parent waits with a deadline: a rank that raises,
dies or hangs ends the whole launch with a clear error (the other ranks are killed), never a hang.

Autograd: when q, k or v require grad, `out` is differentiable; its backward launches the world again,
each rank recomputes its forward and runs its backward (all-to-all back, reduce-scatter, reverse ring) on
its shard of the output gradient (recomputation, as activation checkpointing does).
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import queue as queue_lib
import socket
import time
import traceback

import torch

from . import layout
from .program import prepare, rank_program, shards
from .trace import AlphaBeta, Trace

REPORTED_EXIT = 70  # exit code of a rank that reported its own error (any other non-zero code: a silent death)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, backend, timeout, program, inputs, grad, results):
    try:
        torch.set_num_threads(1)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch.distributed as dist

        from .torch_group import TorchGroup

        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout + 5),  # the parent's deadline fires first on a hang
        )
        group = TorchGroup()
        device = torch.device("cpu")
        if backend == "nccl":  # one GPU per rank
            device = torch.device("cuda", rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            grad = None if grad is None else grad.to(device)
        leaves = tuple(t.detach().to(device).requires_grad_(grad is not None) for t in inputs)
        group.barrier()
        start = time.perf_counter()
        with torch.set_grad_enabled(grad is not None):
            out = program(group, *leaves)
            grads = None
            if grad is not None:
                found = torch.autograd.grad(out, leaves, grad, allow_unused=True)
                grads = [torch.zeros_like(x) if d is None else d for x, d in zip(leaves, found)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        group.barrier()
        if grads is not None:
            grads = [g.cpu() for g in grads]
        payload = {"out": out.detach().cpu(), "grads": grads, "events": group.trace.events, "time": elapsed}
        dist.destroy_process_group()
        results.put(("ok", rank, pickle.dumps(payload)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        # Report before anything else: the other ranks only fail (connection reset) once this one exits,
        # so the parent sees the root cause first.
        results.put(("error", rank, traceback.format_exc()))
        results.close()
        results.join_thread()
        os._exit(REPORTED_EXIT)


def run_world(program, per_rank_inputs, grads=None, backend="gloo", timeout=60.0, start_method="fork") -> list[dict]:
    """Start one process per rank, return their payloads (out, grads, events, time) in rank order."""
    world_size = len(per_rank_inputs)
    ctx = mp.get_context(start_method)
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_worker,
            args=(r, world_size, port, backend, timeout, program, per_rank_inputs[r],
                  None if grads is None else grads[r], results),
            daemon=True,
        )
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    payloads: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(payloads) < world_size:
            try:
                status, rank, body = results.get(timeout=0.05)
            except queue_lib.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in payloads]
                if dead:
                    raise RuntimeError(
                        f"rank {dead[0]} died (exit code {procs[dead[0]].exitcode}) without reporting; "
                        f"the other ranks were stopped"
                    ) from None
                if time.monotonic() > deadline:
                    missing = [r for r in range(world_size) if r not in payloads]
                    raise TimeoutError(
                        f"ranks {missing} did not finish within timeout={timeout} s (a hang or a very slow rank); "
                        f"all ranks were stopped; raise `timeout` if the work is just large"
                    ) from None
                continue
            if status == "error":
                silent = _silent_death(procs, reported={rank, *payloads})
                if silent is not None:  # the real cause: rank `rank` only saw its peer vanish
                    raise RuntimeError(
                        f"rank {silent} died (exit code {procs[silent].exitcode}) without reporting; rank {rank} "
                        f"then failed and the other ranks were stopped. Rank {rank}'s traceback:\n{body}"
                    )
                raise RuntimeError(f"rank {rank} raised; the other ranks were stopped. Its traceback:\n{body}")
            payloads[rank] = pickle.loads(body)
    finally:
        for p in procs:
            if p.is_alive() and len(payloads) < world_size:
                p.kill()
        for p in procs:
            p.join(timeout=5)
        results.close()
    return [payloads[r] for r in range(world_size)]


def _silent_death(procs, reported, grace: float = 0.5):
    """A rank that exited non-zero without reporting (killed, os._exit), waiting up to `grace` s for exit codes."""
    deadline = time.monotonic() + grace
    while True:
        for r, p in enumerate(procs):
            if r not in reported and p.exitcode not in (None, 0, REPORTED_EXIT):
                return r
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _trace_from(payloads, world_size, phase=None) -> Trace:
    events = sorted((e for p in payloads for e in p["events"]), key=lambda e: (e.step, e.src, e.dst))
    if phase is not None:
        events = [e for e in events if e.phase == phase]
    times = [p["time"] for p in payloads]
    return Trace(world_size, events=events, time=max(times), measured=True, rank_times=times)


class _Launched(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, job):
        ctx.job = job
        ctx.save_for_backward(q, k, v)
        payloads = run_world(job["program"], shards(job["layout"], (q, k, v), job["world"]), None, **job["run"])
        job["trace"] = _trace_from(payloads, job["world"])
        return layout.join(job["layout"], [p["out"] for p in payloads])

    @staticmethod
    def backward(ctx, grad):
        job = ctx.job
        q, k, v = ctx.saved_tensors
        per_rank_grads = layout.split(job["layout"], grad.contiguous(), job["world"])
        payloads = run_world(job["program"], shards(job["layout"], (q.detach(), k.detach(), v.detach()), job["world"]),
                             per_rank_grads, **job["run"])
        backward_trace = _trace_from(payloads, job["world"], phase="backward")
        job["trace"].events.extend(backward_trace.events)
        job["trace"].backward_time = max(p["time"] for p in payloads)
        dq, dk, dv = (layout.join(job["layout"], [p["grads"][i] for p in payloads]) for i in range(3))
        return dq, dk, dv, None


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
    start_method: str = "fork",
    alpha: float | None = None,
    beta: float | None = None,
    **opts,
) -> tuple[torch.Tensor, Trace]:
    """`simulate`, but on `world_size` real processes -> (out, trace) with the same trace fields.

    q (B, H, N, D), k/v (B, Hk, N, D/Dv) full inputs (CPU); out (B, H, N, Dv). trace.time is the measured
    wall-clock seconds of the slowest rank (between two barriers); trace.rank_times per rank; trace.model
    holds alpha/beta (e.g. from `calibrate`) for comparing against `trace.modelled_time()`.
    timeout: seconds for the whole run; a rank that raises, dies or hangs gives RuntimeError/TimeoutError.
    start_method: "fork" (fast; default) or "spawn" (needs a picklable, module-level method).
    """
    opts = dict(opts)
    if backend not in ("gloo", "nccl", "mpi"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or 'mpi', got {backend!r}")
    if backend == "nccl" and start_method == "fork":
        raise ValueError("backend='nccl' needs start_method='spawn' (CUDA cannot be used in forked children)")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    layout_name = prepare(method, q, k, v, world_size, opts)
    base = AlphaBeta()
    model = AlphaBeta(base.alpha if alpha is None else alpha, base.beta if beta is None else beta)
    job = {
        "program": rank_program(method, causal, scale, q.shape[2], opts),
        "layout": layout_name,
        "world": world_size,
        "run": {"backend": backend, "timeout": float(timeout), "start_method": start_method},
    }
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad:
        out = _Launched.apply(q, k, v, job)
    else:
        with torch.no_grad():
            out = _Launched.apply(q, k, v, job)
    trace = job["trace"]
    trace.model = model
    return out, trace
