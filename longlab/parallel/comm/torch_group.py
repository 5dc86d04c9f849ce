"""`TorchGroup`: the Communicator protocol on torch.distributed (gloo on CPU, nccl on CUDA).

Records the same `Event`s as `SimGroup` (this rank's sends, from the sizes of the tensors it hands to the
backend), so a real run's byte counts can be checked against the simulator and the cost formulas.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .protocol import NO_TAG, Recorder, check_partition, nbytes
from .trace import Trace


class _Pending:
    def __init__(self, requests, buffer):
        self._requests, self._buffer = requests, buffer

    def wait(self) -> torch.Tensor:
        for req in self._requests:
            req.wait()
        return self._buffer


class TorchGroup(Recorder):
    """This process's rank in the default torch.distributed process group (call init_process_group first)."""

    def __init__(self, trace: Trace | None = None):
        if not dist.is_initialized():
            raise RuntimeError("TorchGroup needs torch.distributed.init_process_group(...) to have been called")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.trace = trace or Trace(self.world_size, measured=True)
        self._subgroups: dict = {}
        self._init_recorder()

    def __repr__(self) -> str:
        return f"TorchGroup(rank={self.rank}, world_size={self.world_size}, backend={dist.get_backend()})"

    def _group_handle(self, groups):
        """The process group of this rank's block of the partition (new_group is collective: all ranks call it
        for every block, in the same order, the first time a partition is used)."""
        parts = check_partition(groups, self.world_size)
        if len(parts) == 1:
            return None, parts[0]
        key = tuple(parts)
        if key not in self._subgroups:
            mine = None
            for part in parts:
                handle = dist.new_group(list(part))
                if self.rank in part:
                    mine = (handle, part)
            self._subgroups[key] = mine
        return self._subgroups[key]

    def all_to_all(self, chunks, tag=NO_TAG, phase="forward"):
        chunks = [c.contiguous() for c in chunks]
        if len(chunks) != self.world_size:
            raise ValueError(f"all_to_all needs one chunk per rank ({self.world_size}), got {len(chunks)}")
        step = self._next_step()
        received = [torch.empty_like(c) for c in chunks]
        dist.all_to_all(received, chunks)
        for dst, c in enumerate(chunks):
            self._record(step, "all_to_all", dst, nbytes(c), tag, phase)
        return received

    def all_gather(self, x, groups=None, tag=NO_TAG, phase="forward"):
        handle, members = self._group_handle(groups)
        x = x.contiguous()
        step = self._next_step()
        if len(members) == 1:
            return [x.clone()]
        received = [torch.empty_like(x) for _ in members]
        dist.all_gather(received, x, group=handle)
        for dst in members:
            self._record(step, "all_gather", dst, nbytes(x), tag, phase)
        return received

    def reduce_scatter(self, chunks, groups=None, tag=NO_TAG, phase="forward"):
        handle, members = self._group_handle(groups)
        chunks = [c.contiguous() for c in chunks]
        if len(chunks) != len(members):
            raise ValueError(f"reduce_scatter needs one chunk per group member ({len(members)}), got {len(chunks)}")
        step = self._next_step()
        if len(members) == 1:
            return chunks[0].clone()
        out = torch.empty_like(chunks[0])
        dist.reduce_scatter(out, chunks, group=handle)
        for i, dst in enumerate(members):
            self._record(step, "reduce_scatter", dst, nbytes(chunks[i]), tag, phase)
        return out

    def ring_shift(self, x, shift=1, tag=NO_TAG, phase="forward"):
        x = x.contiguous()
        step = self._next_step()
        if self.world_size == 1:
            return _Pending([], x.clone())
        dst, src = (self.rank + shift) % self.world_size, (self.rank - shift) % self.world_size
        buffer = torch.empty_like(x)
        ops = [dist.P2POp(dist.isend, x, dst), dist.P2POp(dist.irecv, buffer, src)]
        requests = dist.batch_isend_irecv(ops)
        self._record(step, "ring_shift", dst, nbytes(x), tag, phase)
        return _Pending(requests, buffer)

    def barrier(self) -> None:
        dist.barrier()
