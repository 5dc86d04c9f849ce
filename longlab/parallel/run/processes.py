"""Run a rank program on real processes, one per rank, and bring back what each rank returned.

Ranks start from a fork server: one clean helper process that has imported torch and this module but never
computes, so forking it is fast (~0.1 s per launch once it runs; starting it costs one torch import, once per
session) and safe. Forking the caller instead is not: a parent that has run MKL/OpenMP work (any attention
call) can be forked while one of its threads holds the MKL allocator's lock, and the child then spins
forever in its first matrix product; a busy machine (threads descheduled mid-section) makes that likely.

The caller creates the rendezvous store (a TCP store on an OS-chosen loopback port, so no port can be taken
between choosing and binding it); each rank joins a gloo (or nccl) group through it, runs the program on its
inputs and writes its output, recorded transfers and measured time to its own pipe. The parent waits on those
pipes and on the processes with a deadline: a rank that raises, dies or hangs ends the whole run with a
clear error (the other ranks are killed), never a hang.
"""
from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import time
import traceback
from multiprocessing.connection import wait

import torch

REPORTED_EXIT = 70  # exit code of a rank that reported its own error (any other non-zero code: a silent death)
START_METHODS = ("forkserver", "spawn")
HOST = "127.0.0.1"


def _worker(rank, world_size, port, job_bytes, result):
    """One rank: join the group through the parent's store, run, send ("ok", payload) or ("error", text)."""
    try:
        torch.set_num_threads(1)  # ranks share the machine's cores
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch.distributed as dist

        from ..comm.torch_group import TorchGroup

        job = pickle.loads(job_bytes)
        backend, timeout, grad = job["backend"], job["timeout"], job["grad"]
        wait_limit = datetime.timedelta(seconds=timeout + 5)  # the parent's deadline fires first on a hang
        store = dist.TCPStore(HOST, port, world_size, is_master=False, timeout=wait_limit)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=wait_limit)
        group = TorchGroup()
        device = torch.device("cpu")
        if backend == "nccl":  # one GPU per rank
            device = torch.device("cuda", rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            grad = None if grad is None else grad.to(device)
        leaves = tuple(t.detach().to(device).requires_grad_(grad is not None) for t in job["inputs"])
        group.barrier()
        start = time.perf_counter()
        with torch.set_grad_enabled(grad is not None):
            out = job["program"](group, *leaves)
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
        result.send_bytes(pickle.dumps(("ok", payload)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        # Report before exiting: the other ranks only fail (connection reset) once this one is gone, so the
        # parent reads the root cause first.
        result.send_bytes(pickle.dumps(("error", traceback.format_exc())))
        os._exit(REPORTED_EXIT)


def context(start_method: str):
    if start_method not in START_METHODS:
        raise ValueError(
            f"start_method must be one of {START_METHODS}, got {start_method!r}; 'fork' is not offered: a forked "
            f"copy of a process that has run MKL/OpenMP work can deadlock (use 'forkserver', or 'spawn')"
        )
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        # The server imports once what every rank needs, then forks: torch and this package, and the module
        # autograd.grad imports on its first call (sympy, ~1 s), which a rank would otherwise import each time.
        ctx.set_forkserver_preload([__name__, "torch.fx.experimental.symbolic_shapes"])
    return ctx


def _store(world_size: int, timeout: float):
    """The rendezvous store, served by this process on a port the OS picks while binding it."""
    import torch.distributed as dist

    limit = datetime.timedelta(seconds=timeout + 5)
    return dist.TCPStore(HOST, 0, world_size, is_master=True, timeout=limit, wait_for_workers=False)


def run_world(program, per_rank_inputs, grads=None, backend="gloo", timeout=60.0,
              start_method="forkserver") -> list[dict]:
    """Start one process per rank, return their payloads (out, grads, events, time) in rank order.

    program: a picklable callable fn(group, q, k, v) (ranks are fresh processes); per_rank_inputs: [(q, k, v)]
    per rank; grads: per-rank output gradients (then each rank also returns input gradients).
    """
    world_size = len(per_rank_inputs)
    ctx = context(start_method)
    jobs = []
    for r in range(world_size):
        job = {"program": program, "inputs": tuple(per_rank_inputs[r]), "backend": backend,
               "timeout": float(timeout), "grad": None if grads is None else grads[r]}
        try:
            jobs.append(pickle.dumps(job))
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise TypeError(
                f"the rank program {program!r} cannot be pickled ({err}); ranks start as fresh processes, so "
                f"pass a method name or a function defined at module level (not a lambda or a local function)"
            ) from err
    store = _store(world_size, timeout)
    procs, readers = [], []
    try:
        for r in range(world_size):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker, args=(r, world_size, store.port, jobs[r], writer), daemon=True)
            proc.start()
            writer.close()  # the child holds the only write end: EOF on the reader means it is gone
            procs.append(proc)
            readers.append(reader)
        return _collect(procs, readers, timeout)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(timeout=5)
        for reader in readers:
            reader.close()
        del store


def _collect(procs, readers, timeout: float) -> list[dict]:
    """Read every rank's message; raise on the first error, a silent death or the deadline."""
    world_size = len(procs)
    payloads: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(payloads) < world_size:
        waiting = [r for r in range(world_size) if r not in payloads]
        ready = wait([readers[r] for r in waiting] + [procs[r].sentinel for r in waiting],
                     timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(
                f"ranks {waiting} did not finish within timeout={timeout} s (a hang or a very slow rank); "
                f"all ranks were stopped; raise `timeout` if the work is just large"
            )
        for r in waiting:
            if readers[r] not in ready and procs[r].sentinel not in ready:
                continue
            message = _read(readers[r])
            if message is None:  # exited (or closed its pipe) without a word
                procs[r].join(timeout=1)
                raise RuntimeError(
                    f"rank {r} died (exit code {procs[r].exitcode}) without reporting; the other ranks were stopped"
                )
            status, body = message
            if status == "error":
                silent = _silent_death(procs, reported={r, *payloads})
                if silent is not None:  # the real cause: rank r only saw its peer vanish
                    raise RuntimeError(
                        f"rank {silent} died (exit code {procs[silent].exitcode}) without reporting; rank {r} "
                        f"then failed and the other ranks were stopped. Rank {r}'s traceback:\n{body}"
                    )
                raise RuntimeError(f"rank {r} raised; the other ranks were stopped. Its traceback:\n{body}")
            payloads[r] = body
    return [payloads[r] for r in range(world_size)]


def _read(reader):
    """The rank's (status, body) message, or None when it closed its pipe without sending one."""
    if not reader.poll():
        return None
    try:
        return pickle.loads(reader.recv_bytes())
    except EOFError:
        return None


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
