"""MemoryLayer: the one base of every memory-augmented attention layer (Memorizing, Focused, LongMem, ...).

The base owns the memory state and the order of operations; a layer adds only its own mathematics.
- lanes: `self.lanes` (`longlab.memory.lanes.Lanes`), one bank per batch row, per-lane capacity, made on first
  use at `memory_size`, following the activations' device;
- document reset: forward(..., doc_start=(B,) bool) empties a lane's bank before it is read;
- read before write: a window never retrieves its own keys; the window's un-rotated keys and its values are
  written after the read, detached (no gradient ever reaches memory);
- retrievals are returned by the call that asks: forward(..., return_retrievals=True) -> (out, LayerReads).

How a new memory layer plugs in (no lane code of its own):

    class MyMemoryAttention(MemoryLayer):
        def read_lane(self, bank, q_raw, q):          # one lane, (H, N, D) queries before / after RoPE
            found = bank.search(q_raw, self.topk)      # any read of the lane's bank (never empty here)
            ...                                        # the differentiable memory partial of this lane
            return LaneRead(out=..., lse=..., record=Retrieval(...))
        def combine(self, q, k, v, reads, **context):  # (B, H, N, D) after RoPE; reads[i] is a LaneRead or None
            local = attend(q, k, v, causal=True)       # mix local attention with what was read
            ...                                        # context also holds q_raw, k_raw (before RoPE) and
            return out                                 # record (True when the caller asked for retrievals);
                                                       # return (out, {name: tensor}) to add call extras

    register_attention("mine", "my.module:MyMemoryAttention")   # longlab.models.registry

Optional overrides: `bank_factory(capacity, device, dtype)` to store something other than a `KVMemory` (a bank
needs add / clear / len / device / to, and whatever `read_lane` calls, e.g. a chunked bank for LongMem);
`write(k_raw, v, doc_ids)` to store something other than the un-rotated keys; `uses_memory(**context)` to skip
memory for some calls (Focused skips it in crossbatch training); `extras(reads)` for layer-wide tensors to return
with the retrievals. Run a model with chosen lanes only through `longlab.memory.lanes.memory_lanes`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.layers import SelfAttention
from .lanes import Lanes, LayerReads, Retrieval
from .store import KVMemory


@dataclass
class LaneRead:
    """One lane's read: out (H, N, Dv) and lse (H, N) (or None) are the differentiable memory partial, record the
    detached Retrieval returned to callers who ask for it (None: nothing worth recording)."""

    out: torch.Tensor
    lse: torch.Tensor | None = None
    record: Retrieval | None = None


class MemoryLayer(SelfAttention):
    """Base of memory-augmented attention layers for TinyLM (see the module docstring for the hooks).

    forward(x (B, N, d), positions (N,), doc_start=None, write_memory=True, doc_ids=None, return_retrievals=False,
    read_memory=True, write_from=0, **context) -> (B, N, d), or (out, LayerReads) when return_retrievals;
    write_from: only tokens from this index on are written to memory."""

    def __init__(self, config, layer_index: int = 0, memory_size: int | None = None):
        super().__init__(config, layer_index)
        self.lanes = Lanes(self.bank_factory, config.memory_size if memory_size is None else memory_size)

    # ---- the state the base owns ---------------------------------------------------------------------
    def bank_factory(self, capacity: int, device=None, dtype=None):
        """An empty bank of `capacity` entries per head (default: a KVMemory of this layer's head sizes)."""
        return KVMemory(capacity, self.head_dim, heads=self.n_heads, device=device, dtype=dtype)

    @property
    def memory_size(self) -> int:
        """Default per-lane capacity (tokens per head); 0 = memory off."""
        return self.lanes.capacity

    @property
    def memories(self) -> list:
        """The lanes' banks (None where a lane has no memory)."""
        return self.lanes.banks

    @property
    def doc_counter(self) -> list[int]:
        return self.lanes.docs

    def ensure_lanes(self, batch: int, device=None, dtype=None) -> Lanes:
        return self.lanes.ensure(batch, device, dtype)

    def reset(self, lane: int | None = None) -> None:
        """A new document starts in every lane (or in `lane`)."""
        self.lanes.reset(lane)

    reset_memory = reset  # the name TinyLM.reset_memory / memory_layers look for

    def set_memory_size(self, size: int) -> None:
        """Change the default capacity (0 disables memory); the lanes start fresh on next use."""
        self.lanes.set_capacity(size)

    def set_lane_memory_sizes(self, sizes: list[int], device=None, dtype=None) -> None:
        """One lane per entry with its own capacity; prefer `memory_lanes(model, sizes)`, which restores."""
        self.lanes.set_sizes(sizes, device, dtype)

    # ---- hooks ---------------------------------------------------------------------------------------
    def uses_memory(self, **context) -> bool:
        return self.lanes.enabled

    def read_lane(self, bank, q_raw: torch.Tensor, q: torch.Tensor) -> LaneRead:
        raise NotImplementedError

    def combine(self, q, k, v, reads, *, q_raw=None, k_raw=None, record: bool = False, **context):
        """(B, H, N, D) out, or (out, extras dict) to return with the retrievals of this call (record=True)."""
        raise NotImplementedError

    def extras(self, reads) -> dict:
        return {}

    # ---- the order of operations -----------------------------------------------------------------------
    def read(self, q_raw: torch.Tensor, q: torch.Tensor) -> list:
        """read_lane for every lane whose bank holds entries; None for the others."""
        return [None if lane.bank is None or len(lane.bank) == 0 else self.read_lane(lane.bank, q_raw[i], q[i])
                for i, lane in enumerate(self.lanes)]

    def write(self, k_raw: torch.Tensor, v: torch.Tensor, doc_ids=None) -> None:
        """Store this window's un-rotated keys and values in every lane (detached)."""
        self.lanes.write(k_raw, v, doc_ids)

    def forward(self, x, positions, doc_start=None, write_memory: bool = True, doc_ids=None,
                return_retrievals: bool = False, read_memory: bool = True, write_from: int = 0, **context):
        q_raw, k_raw, v = self.project(x)
        q, k = self.rotate(q_raw, k_raw, positions)
        reads = None
        use = self.uses_memory(**context)
        if use:
            self.ensure_lanes(x.shape[0], k_raw.device, k_raw.dtype)
            self.lanes.start_documents(doc_start)
            if read_memory:  # False: write only (filling memory fast; the output then ignores memory)
                reads = self.read(q_raw, q)  # READ before this window is written
        out = self.combine(q, k, v, reads, q_raw=q_raw, k_raw=k_raw, record=return_retrievals, **context)
        call_extras = {}
        if isinstance(out, tuple):
            out, call_extras = out
        if use and write_memory:
            with torch.no_grad():  # write_from: the first tokens were written before (an overlapped read)
                self.write(k_raw[:, :, write_from:], v[:, :, write_from:], doc_ids)
        out = self.merge_heads(out)
        if not return_retrievals:
            return out
        records = [None] * x.shape[0] if reads is None else [r.record if r is not None else None for r in reads]
        return out, LayerReads(self.layer_index, records, {**self.extras(reads), **call_extras})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, memory_size={self.memory_size}"
