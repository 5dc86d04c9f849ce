"""Record what a memory layer retrieves for every token of a document (for the retrieval explorer).

`record_retrievals(model, tokens, memory_size)` reads the document window after window with one memory of
`memory_size` tokens and keeps, for each query byte t and head h, the top-k retrieved memory positions,
their scores and softmax weights, their document ids, plus the layer's per-head gates (NaN for a layer without
one). The retrievals come back from the forward call that asks for them (return_retrievals=True).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .lanes import memory_lanes, memory_layers

RECORD_TOPK = 32  # entries recorded per query for layers that attend to all of memory (topk=None)


@dataclass
class Retrievals:
    """positions / doc_ids (H, T, k) int64 (-1 where nothing was retrieved: the first window, empty memory);
    scores / weights (H, T, k) float (NaN where nothing); gates (H,) (NaN: no gate); tokens (T,) the bytes read."""

    positions: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    doc_ids: torch.Tensor
    gates: torch.Tensor
    tokens: torch.Tensor
    memory_size: int
    layer_index: int
    memory: object = None  # the layer's KVMemory after the last window (real keys, e.g. for search demos)

    @property
    def heads(self) -> int:
        return self.positions.shape[0]

    def for_query(self, t: int) -> dict:
        """Retrieval of query byte t: dict of (H, k) tensors (positions, scores, weights, doc_ids)."""
        if not 0 <= t < self.tokens.numel():
            raise ValueError(f"query position must be in [0, {self.tokens.numel()}), got {t}")
        return {name: getattr(self, name)[:, t] for name in ("positions", "scores", "weights", "doc_ids")}

    def __repr__(self) -> str:
        return (f"Retrievals({self.tokens.numel()} bytes, heads={self.heads}, k={self.positions.shape[-1]}, "
                f"memory_size={self.memory_size}, layer={self.layer_index})")


@torch.no_grad()
def record_retrievals(model, tokens: torch.Tensor, memory_size: int = 4096, layer: int = 0,
                      max_tokens: int | None = None, clear_between: list[int] | None = None,
                      progress: bool = True) -> Retrievals:
    """Run `model` over `tokens` (N,) in windows of config.context and record memory layer `layer`'s reads.

    Every memory layer reads with one lane of `memory_size` tokens (inside `memory_lanes`: the model's own lanes
    are untouched). clear_between: optional byte offsets (multiples of context) where a new document starts.
    """
    layers = memory_layers(model)
    if not layers:
        raise ValueError("model has no memory layer; build it with attention=(..., 'memorizing')")
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer must index one of the model's {len(layers)} memory layers, got {layer}")
    target = layers[layer]
    block = target.layer_index
    tokens = tokens if max_tokens is None else tokens[:max_tokens]
    context, heads = model.config.context, target.n_heads
    k = target.topk or RECORD_TOPK
    windows = tokens.numel() // context
    if windows < 1:
        raise ValueError(f"need at least context={context} tokens, got {tokens.numel()}")
    total = windows * context
    positions = torch.full((heads, total, k), -1, dtype=torch.long)
    doc_ids = torch.full((heads, total, k), -1, dtype=torch.long)
    scores = torch.full((heads, total, k), float("nan"))
    weights = torch.full((heads, total, k), float("nan"))
    starts = set(clear_between or [])
    gates = None
    with memory_lanes(model, sizes=[memory_size]) as run:
        device = next(model.parameters()).device
        for w in tqdm(range(windows), desc="record retrievals", unit="window", disable=not progress):
            lo = w * context
            x = tokens[lo : lo + context].to(device)[None]
            _, _, reads = run(x, doc_start=torch.tensor([lo in starts]), return_retrievals=True)
            found = reads[block].lanes[0]
            gates = reads[block].extras.get("gate")
            if found is None:
                continue
            got = found.positions.shape[-1]
            positions[:, lo : lo + context, :got] = found.positions.cpu()
            doc_ids[:, lo : lo + context, :got] = found.doc_ids.cpu()
            scores[:, lo : lo + context, :got] = found.scores.float().cpu()
            weights[:, lo : lo + context, :got] = found.weights.float().cpu()
        final_memory = target.memories[0]
    gates = torch.full((heads,), float("nan")) if gates is None else gates.float().cpu()
    return Retrievals(positions, scores, weights, doc_ids, gates, tokens[:total], memory_size, layer, final_memory)
