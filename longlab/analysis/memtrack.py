"""Peak tensor memory of a call, on any device, by watching every tensor an op creates.

CPU has no `max_memory_allocated`; instead a TorchDispatchMode sees each op's outputs (forward and backward),
adds the bytes of every new storage and subtracts them when the storage is freed. The peak counts tensors
created during the call (activations, saved tensors, outputs, gradients), not the inputs that already
existed, and not scratch buffers a fused kernel allocates internally.
"""
from __future__ import annotations

import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorMemoryTracker(TorchDispatchMode):
    """Context manager: `with TensorMemoryTracker() as t: fn()`, then `t.peak_bytes`, `t.current_bytes`."""

    def __init__(self):
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Storages of the arguments: an output sharing one that we do not track is a view of a tensor that
        # existed before the call (an input), not new memory.
        arg_storages = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                        if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._live or key in arg_storages:
                continue
            self._live.add(key)
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            weakref.finalize(storage, self._free, key, nbytes)
        return out

    def __repr__(self) -> str:
        return f"TensorMemoryTracker(peak={self.peak_bytes / 2**20:.1f} MiB, live={self.current_bytes / 2**20:.1f} MiB)"


def timed_peak(fn, device=None) -> tuple[float, int]:
    """Run fn() once; return (wall seconds, peak bytes of tensors created during the call).

    On CUDA the allocator's own peak counter is used instead (it also counts kernels' scratch buffers) and
    nothing intercepts the ops, so the timing carries no Python bookkeeping per launched kernel."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - start, torch.cuda.max_memory_allocated(device) - before
    tracker = TensorMemoryTracker()
    with tracker:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
    return elapsed, tracker.peak_bytes
