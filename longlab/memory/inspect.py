"""Record what a memorizing layer retrieves for every token of a document (for the retrieval explorer).

`record_retrievals(model, tokens, memory_size)` reads the document window after window with one memory of
`memory_size` tokens and keeps, for each query byte t and head h, the top-k retrieved memory positions,
their cosine scores and softmax weights, their document ids, plus the layer's per-head gates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class Retrievals:
    """positions / doc_ids (H, T, k) int64 (-1 where nothing was retrieved: the first window, empty memory);
    scores / weights (H, T, k) float (NaN where nothing); gates (H,); tokens (T,) the bytes read."""

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

    clear_between: optional byte offsets (multiples of context) where a new document starts (memory cleared).
    """
    layers = model.memory_layers()
    if not layers:
        raise ValueError("model has no memory layer; build it with attention=(..., 'memorizing')")
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer must index one of the model's {len(layers)} memory layers, got {layer}")
    target = layers[layer]
    tokens = tokens if max_tokens is None else tokens[:max_tokens]
    context, heads, k = model.config.context, target.n_heads, target.topk
    windows = tokens.numel() // context
    if windows < 1:
        raise ValueError(f"need at least context={context} tokens, got {tokens.numel()}")
    param = next(model.parameters())
    for mem_layer in layers:
        mem_layer.set_lane_memory_sizes([memory_size], device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    total = windows * context
    positions = torch.full((heads, total, k), -1, dtype=torch.long)
    doc_ids = torch.full((heads, total, k), -1, dtype=torch.long)
    scores = torch.full((heads, total, k), float("nan"))
    weights = torch.full((heads, total, k), float("nan"))
    starts = set(clear_between or [])
    target.record = True
    try:
        for w in tqdm(range(windows), desc="record retrievals", unit="window", disable=not progress):
            lo = w * context
            x = tokens[lo : lo + context].to(param.device)[None]
            model(x, doc_start=torch.tensor([lo in starts]))
            found = target.last_read["reads"][0]
            if found is None:
                continue
            result, attn = found
            got = result.indices.shape[-1]
            positions[:, lo : lo + context, :got] = result.positions.cpu()
            doc_ids[:, lo : lo + context, :got] = result.doc_ids.cpu()
            scores[:, lo : lo + context, :got] = result.scores.float().cpu()
            weights[:, lo : lo + context, :got] = attn.float().cpu()
        gates = target.gate().detach().float().cpu()
        final_memory = target.memories[0]
    finally:
        target.record = False
        for mem_layer in layers:
            mem_layer.set_memory_size(model.config.memory_size)
        model.train(was_training)
    return Retrievals(positions, scores, weights, doc_ids, gates, tokens[:total], memory_size, layer, final_memory)
