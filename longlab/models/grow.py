"""Grow a trained TinyLM by one layer that starts as the identity (its output projections at zero), so the grown
model computes exactly what the trained one did and training can only add what the extra layer makes possible
(e.g. a second dense layer before a memory layer, to build keys from more than one layer of features)."""
from __future__ import annotations

import dataclasses

import torch

from .tiny import TinyLM


@torch.no_grad()
def grow_by_one_layer(source: TinyLM, insert_at: int, kind: str = "dense") -> TinyLM:
    """A new TinyLM: `source`'s layers with one layer of attention `kind` inserted at index `insert_at` (0 = first,
    len(source.blocks) = last); every other weight copied from `source`, the new layer's attention and MLP output
    projections zero, its other weights freshly initialised."""
    layers = len(source.blocks)
    if not 0 <= insert_at <= layers:
        raise ValueError(f"insert_at must be in 0..{layers} for a {layers}-layer model, got {insert_at}")
    kinds = list(source.config.attention)
    kinds.insert(insert_at, kind)
    grown = TinyLM(dataclasses.replace(source.config, n_layers=layers + 1, attention=tuple(kinds)))
    grown.to(next(source.parameters()).dtype)
    state = grown.state_dict()
    for name, tensor in source.state_dict().items():
        if name.startswith("blocks."):
            index, rest = name.split(".", 2)[1:]
            name = f"blocks.{int(index) + (int(index) >= insert_at)}.{rest}"
        state[name] = tensor
    grown.load_state_dict(state)
    fresh = grown.blocks[insert_at]
    fresh.attn.proj.weight.zero_()
    fresh.mlp.down.weight.zero_()
    fresh.mlp.down.bias.zero_()
    return grown
