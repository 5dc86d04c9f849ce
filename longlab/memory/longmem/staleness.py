"""Memory staleness: how far keys cached earlier are from what the current weights would write for the same text.

A memory written by a layer that keeps training (the Memorizing Transformer's kNN layer) holds keys made by older
weights; queries from the new weights search them anyway (Wu et al. 2022 sec. 3.2 note this; LongMem, Wang et al.
2023 sec. 1, freezes the backbone that writes memory so it cannot happen). For fixed probe text:

    drift(t) = mean over heads, tokens of 1 - cos(k_cached, k_t)      k_cached: keys written at step 0,
                                                                      k_t: what the weights at step t would write
It is exactly 0 for the frozen LongMem backbone: its weights, hence its keys, never change.
"""
from __future__ import annotations

import torch

from ..lanes import memory_lanes


def probe_windows(tokens: torch.Tensor, context: int, windows: int) -> torch.Tensor:
    """The first `windows` consecutive windows of `tokens` as a batch (windows, context) int64."""
    if tokens.numel() < windows * context:
        raise ValueError(f"probe text has {tokens.numel()} tokens; need windows * context = {windows * context}")
    return tokens[: windows * context].view(windows, context).long()


@torch.no_grad()
def tinylm_layer_keys(model, layer: int, windows: torch.Tensor) -> torch.Tensor:
    """Pre-RoPE keys (W, H, N, D) that TinyLM block `layer` computes for `windows` (W, N) read with no memory
    (the keys its memory layer would write)."""
    if not 0 <= layer < len(model.blocks):
        raise ValueError(f"layer must be 0..{len(model.blocks) - 1}, got {layer}")
    positions = torch.arange(windows.shape[1], device=windows.device)
    with memory_lanes(model, sizes=[0] * windows.shape[0]):
        x = model.embed(windows)
        for block in model.blocks[:layer]:
            x = block(x, positions)
        block = model.blocks[layer]
        return block.attn.project(block.norm1(x))[1].clone()


@torch.no_grad()
def longmem_source_keys(model, windows: torch.Tensor) -> torch.Tensor:
    """Pre-RoPE keys (W, H, N, D) the LongMem backbone layer m writes to memory for `windows` (W, N)."""
    return model.backbone_states(windows, torch.arange(windows.shape[1], device=windows.device))[1][0].clone()


def key_drift(cached: torch.Tensor, current: torch.Tensor) -> dict:
    """{"drift": mean (1 - cos), "drift_max": max (1 - cos), "changed": share of key vectors not bit-identical}
    between same-shaped key tensors (..., D), in float64; a bit-identical key counts exactly 0 (cos(k, k) = 1;
    rounding in the cosine would otherwise give about 1e-16)."""
    if cached.shape != current.shape:
        raise ValueError(f"cached {tuple(cached.shape)} and current {tuple(current.shape)} keys must match")
    same = (cached == current).all(dim=-1)
    gap = 1 - torch.nn.functional.cosine_similarity(cached.double(), current.double(), dim=-1)
    gap = gap.masked_fill(same, 0.0)
    return {"drift": gap.mean().item(), "drift_max": gap.max().item(), "changed": 1 - same.double().mean().item()}


def drift_probe(keys_of, windows: torch.Tensor):
    """probe(model) -> key_drift(keys at the first call, keys now), for `train_streams`. keys_of(model, windows)."""
    cached = {}

    def probe(model) -> dict:
        keys = keys_of(model, windows)
        if "keys" not in cached:
            cached["keys"] = keys
        return key_drift(cached["keys"], keys)

    return probe
