"""Memory lanes: the per-batch-row memory state of a memory layer, and `memory_lanes`, the one way to run a model
with given lanes that always gives the caller's state back.

A *lane* is one batch row read as one document stream. It owns one memory bank (a `KVMemory` unless the layer's
`bank_factory` makes something else, e.g. a chunked bank) with its own capacity, and a document counter: the doc
id written with the lane's entries, bumped at every document start. `Lanes` holds the lanes of one layer:

    lanes.ensure(batch, device, dtype)   one lane per batch row (made on first use at `capacity`; 0 = no memory);
                                         banks follow the activations' device, contents kept
    lanes.reset(lane=None)               a new document starts in every lane (or one): bank emptied, doc id + 1
    lanes.set_sizes([0, 1024, 4096])     one lane per entry with its own capacity (compare memory sizes in one pass)
    lanes.snapshot() / lanes.restore(s)  what `memory_lanes` uses to put the caller's state back

The layer side (read before write, the `read_lane` / `combine` hooks) is `longlab.memory.base.MemoryLayer`; this
module does not import the models package, so `longlab.models.train` can use `memory_lanes` without a cycle.

    with memory_lanes(model, sizes=[0, 1024, 4096]) as run:
        logits, loss = run(x.expand(3, -1), y.expand(3, -1), reduction="none")
        logits, loss, reads = run(x3, y3, return_retrievals=True)   # reads: {block index: LayerReads}
    # here every memory layer has exactly the lanes (and contents) it had before, also after an exception
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..checks import int_at_least


@dataclass
class Lane:
    """One batch lane: its memory bank (None = this lane has no memory) and its current document id."""

    bank: object | None
    doc: int = 0


@dataclass
class Retrieval:
    """What one lane of a memory layer retrieved in one call, detached, each (H, N, k) (k may vary per call).

    positions / doc_ids: what was stored with each entry; scores: the layer's similarity (cosine for the
    Memorizing layer, scaled inner product for Focused); weights: the attention weight each entry got."""

    positions: torch.Tensor
    doc_ids: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor

    def __repr__(self) -> str:
        h, n, k = self.positions.shape
        return f"Retrieval(heads={h}, queries={n}, k={k})"


@dataclass
class LayerReads:
    """Retrievals of one memory layer in one forward call: lanes[i] is lane i's Retrieval (None where its memory
    was empty or absent); extras holds layer-specific detached tensors (e.g. "gate" (H,), "memory_mass" (B, H, N))."""

    layer_index: int
    lanes: list
    extras: dict

    def __repr__(self) -> str:
        got = sum(r is not None for r in self.lanes)
        return (f"LayerReads(layer={self.layer_index}, lanes={len(self.lanes)}, read={got}, "
                f"extras={sorted(self.extras)})")


class Lanes:
    """The lanes of one memory layer. factory(capacity, device, dtype) makes an empty bank; `capacity` is the
    default per-lane capacity (tokens per head) used when lanes are made on first use; 0 disables memory.

    A bank needs: add(keys, values, doc_ids=...), clear(), len(), .device and .to(device) (in place)."""

    def __init__(self, factory: Callable, capacity: int):
        self.factory = factory
        self.capacity = int_at_least("memory size", capacity, 0, "tokens per head")
        self._lanes: list[Lane] = []

    # ---- reading the state -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._lanes)

    def __iter__(self) -> Iterator[Lane]:
        return iter(self._lanes)

    def __getitem__(self, i: int) -> Lane:
        return self._lanes[i]

    @property
    def banks(self) -> list:
        return [lane.bank for lane in self._lanes]

    @property
    def docs(self) -> list[int]:
        return [lane.doc for lane in self._lanes]

    @property
    def enabled(self) -> bool:
        """True when some lane may hold memory (capacity > 0, or explicit lanes with a bank)."""
        return self.capacity > 0 or any(lane.bank is not None for lane in self._lanes)

    def __repr__(self) -> str:
        sizes = [0 if lane.bank is None else len(lane.bank) for lane in self._lanes]
        return f"Lanes(capacity={self.capacity}, filled={sizes})"

    # ---- changing it -------------------------------------------------------------------------------
    def _bank(self, capacity: int, device, dtype):
        return self.factory(capacity, device, dtype) if capacity else None

    def ensure(self, batch: int, device=None, dtype=None) -> Lanes:
        """One lane per batch row. A different row count starts fresh lanes at `capacity`; a different device
        moves the existing banks there (their contents and per-lane capacities kept)."""
        if len(self._lanes) != batch:
            self._lanes = [Lane(self._bank(self.capacity, device, dtype)) for _ in range(batch)]
        elif device is not None:
            device = torch.device(device)
            for lane in self._lanes:
                if lane.bank is not None and lane.bank.device != device:
                    lane.bank.to(device)
        return self

    def set_capacity(self, capacity: int) -> None:
        """Default capacity for lanes made from now on; drops the current lanes (they are made on next use)."""
        self.capacity = int_at_least("memory size", capacity, 0, "tokens per head")
        self._lanes = []

    def set_sizes(self, sizes: Sequence[int], device=None, dtype=None) -> None:
        """One lane per entry of `sizes`, each with its own capacity (0 = that lane has no memory)."""
        sizes = list(sizes)
        if not sizes:
            raise ValueError("lane sizes must be a non-empty list of ints >= 0 (one per batch lane)")
        for s in sizes:
            int_at_least("lane memory size", s, 0, "tokens per head")
        self.capacity = max(sizes)
        self._lanes = [Lane(self._bank(s, device, dtype)) for s in sizes]

    def reset(self, lane: int | None = None) -> None:
        """A new document starts in every lane (lane=None) or in `lane`: its bank is emptied, its doc id bumped."""
        if lane is not None and not -len(self._lanes) <= lane < len(self._lanes):
            raise IndexError(f"lane {lane} out of range: the layer has {len(self._lanes)} lanes")
        for target in (self._lanes if lane is None else [self._lanes[lane]]):
            if target.bank is not None:
                target.bank.clear()
            target.doc += 1

    def start_documents(self, doc_start) -> None:
        """Reset every lane whose entry of doc_start (B,) bool is True (None: nothing starts)."""
        if doc_start is None:
            return
        for i in torch.as_tensor(doc_start).reshape(-1).nonzero().flatten().tolist():
            self.reset(i)

    def write(self, keys: torch.Tensor, values: torch.Tensor, doc_ids=None) -> None:
        """Append lane i's keys[i] / values[i] (B, H, N, D) to its bank (detached by the bank), tagged with the
        lane's document id (or doc_ids[i] when given)."""
        for i, lane in enumerate(self._lanes):
            if lane.bank is not None:
                doc = lane.doc if doc_ids is None else int(doc_ids[i])
                lane.bank.add(keys[i], values[i], doc_ids=doc)

    def snapshot(self) -> tuple:
        return (self._lanes, self.capacity)

    def restore(self, state: tuple) -> None:
        self._lanes, self.capacity = state


def memory_layers(model) -> list:
    """The layers of `model` that hold memory lanes (every block attention with a `lanes` attribute)."""
    if hasattr(model, "memory_layers"):
        return list(model.memory_layers())
    return [m for m in model.modules() if isinstance(getattr(m, "lanes", None), Lanes)]


class LaneRun:
    """Callable handed out by `memory_lanes`: run(idx, targets=None, **context) calls the model (with
    return_retrievals=True it returns (logits, loss, {block index: LayerReads})); reset(lane=None) starts a new
    document; layers lists the memory layers; sizes the lane capacities (None: each layer's own, any batch)."""

    def __init__(self, model, layers: list, sizes: list | None):
        self.model, self.layers, self.sizes = model, layers, sizes

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor | None = None, **context):
        if self.sizes is not None and idx.shape[0] != len(self.sizes):
            raise ValueError(f"the lanes were set for a batch of {len(self.sizes)} (sizes={self.sizes}); got a batch "
                             f"of {idx.shape[0]} rows")
        return self.model(idx, targets, **context)

    def reset(self, lane: int | None = None) -> None:
        for layer in self.layers:
            layer.lanes.reset(lane)


@contextmanager
def memory_lanes(model, sizes: Sequence[int] | None = None, *, train: bool = False, require: bool = False):
    """Run `model` with fresh memory lanes; on exit, also on error, every memory layer gets back exactly the
    lanes, contents and capacity it had, and the model its train/eval mode.

    sizes: None = each memory layer starts empty lanes at its own capacity (made on first use, any batch size);
        a list = one lane per entry with that capacity in tokens per head (0 = no memory), batches of len(sizes).
    train: keep the model's mode (default: eval mode inside). require: raise if the model has no memory layer.
    Yields a `LaneRun`.
    """
    layers = memory_layers(model)
    if require and not layers:
        raise ValueError("model has no memory layer; build it with a memory attention kind, e.g. "
                         "attention=(..., 'memorizing') or (..., 'focused')")
    if sizes is not None:
        sizes = [int_at_least("lane memory size", s, 0, "tokens per head") for s in sizes]
        if not sizes:
            raise ValueError("sizes must be a non-empty list of ints >= 0 (one per batch lane), or None")
    param = next(model.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (None, None)
    saved = [layer.lanes.snapshot() for layer in layers]
    was_training = model.training
    try:
        for layer in layers:
            if sizes is None:
                layer.lanes.set_capacity(layer.lanes.capacity)
            else:
                layer.lanes.set_sizes(sizes, device=device, dtype=dtype)
        if not train:
            model.eval()
        yield LaneRun(model, layers, sizes)
    finally:
        for layer, state in zip(layers, saved):
            layer.lanes.restore(state)
        model.train(was_training)
