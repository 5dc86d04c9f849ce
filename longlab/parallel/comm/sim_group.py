"""`SimGroup`: every rank is a thread of this process; transfers are recorded and timed by an alpha-beta clock.

`SimWorld(P).run(fn, per_rank_args)` starts P threads, each calling fn(group, *args) with its own `SimGroup`.
Collectives meet at a barrier (with a timeout, aborted as soon as any rank raises, so a bug never hangs).
The algorithms are the same code that runs on real processes through `TorchGroup`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch

from ...checks import positive_int
from .protocol import NO_TAG, Recorder, nbytes
from .trace import AlphaBeta, Trace


class _Done:
    def __init__(self, value):
        self._value = value

    def wait(self):
        return self._value


class SimGroup(Recorder):
    """One rank of a simulated world (see `SimWorld`). Counts bytes per transfer; never copies to itself."""

    def __init__(self, world: SimWorld, rank: int):
        self.world, self.rank, self.world_size = world, rank, world.world_size
        self.trace = world.trace
        self._init_recorder()

    def __repr__(self) -> str:
        return f"SimGroup(rank={self.rank}, world_size={self.world_size})"

    def _append(self, event) -> None:
        with self.world.lock:
            self.trace.events.append(event)

    def _exchange(self, payload):
        return self.world.exchange(self.rank, payload)

    def all_to_all(self, chunks, tag=NO_TAG, phase="forward"):
        chunks = list(chunks)
        if len(chunks) != self.world_size:
            raise ValueError(f"all_to_all needs one chunk per rank ({self.world_size}), got {len(chunks)}")
        step = self._next_step()
        payloads = self._exchange(chunks)
        for dst, c in enumerate(chunks):
            self._record(step, "all_to_all", dst, nbytes(c), tag, phase)
        return [payloads[src][self.rank].clone() for src in range(self.world_size)]

    def all_gather(self, x, groups=None, tag=NO_TAG, phase="forward"):
        members = self._my_group(groups)
        step = self._next_step()
        payloads = self._exchange(x)
        for dst in members:
            self._record(step, "all_gather", dst, nbytes(x), tag, phase)
        return [payloads[src].clone() for src in members]

    def reduce_scatter(self, chunks, groups=None, tag=NO_TAG, phase="forward"):
        members = self._my_group(groups)
        chunks = list(chunks)
        if len(chunks) != len(members):
            raise ValueError(f"reduce_scatter needs one chunk per group member ({len(members)}), got {len(chunks)}")
        step = self._next_step()
        payloads = self._exchange(chunks)
        for i, dst in enumerate(members):
            self._record(step, "reduce_scatter", dst, nbytes(chunks[i]), tag, phase)
        me = members.index(self.rank)
        total = payloads[members[0]][me].clone()
        for src in members[1:]:
            total = total + payloads[src][me]
        return total

    def ring_shift(self, x, shift=1, tag=NO_TAG, phase="forward"):
        step = self._next_step()
        payloads = self._exchange(x)
        self._record(step, "ring_shift", (self.rank + shift) % self.world_size, nbytes(x), tag, phase)
        return _Done(payloads[(self.rank - shift) % self.world_size].clone())

    def barrier(self) -> None:
        self._exchange(None)


class SimWorld:
    """P simulated ranks sharing one `Trace`. alpha/beta: the clock's latency (s) and inverse bandwidth (s/byte).

    timeout: seconds a rank waits at a collective before the world is declared hung (then every rank raises).
    """

    def __init__(self, world_size: int, model: AlphaBeta | None = None, timeout: float = 60.0):
        self.world_size = positive_int("world_size", world_size)
        self.trace = Trace(world_size, model=model or AlphaBeta())
        self.lock = threading.Lock()
        self._slots: list = [None] * world_size
        self._barrier = threading.Barrier(world_size, timeout=timeout)
        self.groups = [SimGroup(self, r) for r in range(world_size)]

    def exchange(self, rank: int, payload) -> list:
        self._slots[rank] = payload
        self._barrier.wait()  # everybody has deposited
        seen = list(self._slots)
        self._barrier.wait()  # everybody has read; slots may be reused
        return seen

    def run(self, fn: Callable, per_rank_args: Sequence[tuple], grad_enabled: bool = True) -> list:
        """Call fn(group_r, *per_rank_args[r]) on P threads; return the P results (re-raising the first error)."""
        if len(per_rank_args) != self.world_size:
            raise ValueError(f"need {self.world_size} argument tuples, got {len(per_rank_args)}")
        results: list = [None] * self.world_size
        errors: list = []

        def body(rank):
            try:
                with torch.set_grad_enabled(grad_enabled):
                    results[rank] = fn(self.groups[rank], *per_rank_args[rank])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append((rank, exc))
                self._barrier.abort()  # release the other ranks instead of letting them hang

        threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in range(self.world_size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            real = [(r, e) for r, e in errors if not isinstance(e, threading.BrokenBarrierError)] or errors
            rank, exc = real[0]
            if isinstance(exc, threading.BrokenBarrierError):
                raise TimeoutError(
                    "simulated world hung: a rank waited longer than the timeout at a collective "
                    "(ranks calling different collectives?)"
                ) from exc
            try:
                wrapped = type(exc)(f"rank {rank}: {exc}")
            except Exception:  # noqa: BLE001 - exception types with unusual constructors
                wrapped = RuntimeError(f"rank {rank}: {type(exc).__name__}: {exc}")
            raise wrapped from exc
        self.trace.events.sort(key=lambda e: (e.phase != "forward", e.step, e.src, e.dst))  # thread order varies
        self.trace.time = self.trace.modelled_time()
        return results
