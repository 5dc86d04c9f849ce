"""LongMem's SideNet (Wang et al. 2023, arXiv 2306.07174, sec. 2.2): a small trainable decoder beside a frozen one.

With a frozen backbone of L layers whose hidden states are H_0 (embedding output) .. H_L, and reduction r, the
SideNet has S = ceil(L / r) layers. SideNet layer i covers the backbone span (lo_i, hi_i) = (r i, min(r (i + 1), L)):

    x_0 = H_0                                        it reads the backbone's embedding output
    x_{i+1} = Block_i(x_i) + (H_{hi_i} - H_{lo_i})   the cross-network residual
    logits = frozen_head(frozen_norm(x_S))

Layer i starts as a copy of backbone layer hi_i - 1 (the last layer of its span; the paper copies the backbone
layer of the same relative depth). The spans tile 0..L, so the residuals telescope: with every SideNet sublayer
output zeroed, x_S = H_0 + sum_i (H_{hi_i} - H_{lo_i}) = H_L, the backbone's own final hidden state.
One SideNet layer (`memory_layer`, by default the last) is a `LongMemAttention` layer; the others are dense. Not
layer 0 by default: it reads H_0, the token embedding, so its memory queries would depend on the current token alone.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from ...checks import int_at_least, positive_int
from ...models.layers import DecoderBlock
from ...models.registry import attention_class


def side_spans(n_backbone: int, reduction: int) -> list[tuple[int, int]]:
    """(lo, hi) backbone hidden-state indices of each SideNet layer's residual H_hi - H_lo; they tile 0..L."""
    positive_int("backbone layers", n_backbone)
    positive_int("reduction", reduction, "backbone layers per SideNet layer")
    return [(r, min(r + reduction, n_backbone)) for r in range(0, n_backbone, reduction)]


class SideNet(nn.Module):
    """The trainable SideNet: `blocks` (pre-norm TinyLM blocks, copied from the backbone) and `spans`.

    forward(hidden [H_0 .. H_L] each (B, N, d), positions (N,), memory_context: dict for the memory layer)
    -> x_S (B, N, d), or (x_S, LayerReads) when memory_context asks return_retrievals."""

    def __init__(self, backbone, reduction: int = 2, memory_layer: int | None = None, memory_size: int = 16384,
                 topk: int = 32, chunk_size: int = 4):
        super().__init__()
        cfg = backbone.config
        self.spans = side_spans(cfg.n_layers, reduction)
        self.reduction = reduction
        n_side = len(self.spans)
        memory_layer = n_side - 1 if memory_layer is None else memory_layer  # layer 0's queries see one byte only
        if isinstance(memory_layer, bool) or not isinstance(memory_layer, int) or not 0 <= memory_layer < n_side:
            raise ValueError(f"memory_layer={memory_layer!r} is out of range: the SideNet has {n_side} layers "
                             f"(backbone {cfg.n_layers} layers / reduction {reduction}); pick 0..{n_side - 1}")
        int_at_least("memory_size", memory_size, 0, "tokens per lane")
        self.memory_layer = memory_layer
        self.init_from = [hi - 1 for _, hi in self.spans]
        kinds = tuple("longmem" if i == memory_layer else "dense" for i in range(n_side))
        self.config = dataclasses.replace(cfg, n_layers=n_side, attention=kinds, memory_size=memory_size,
                                          memory_topk=topk, extra={**cfg.extra, "chunk_size": chunk_size})
        self.blocks = nn.ModuleList(DecoderBlock(self.config, i, attention_class(kind)) for i, kind in enumerate(kinds))
        for block, source in zip(self.blocks, self.init_from):
            missing, unexpected = block.load_state_dict(backbone.blocks[source].state_dict(), strict=False)
            if unexpected or any(not name.endswith("gate_bias") for name in missing):
                raise ValueError(f"backbone layer {source} does not fit a SideNet block: missing {missing}, "
                                 f"unexpected {unexpected}")

    @property
    def memory(self):
        """The memory-augmented attention layer (a LongMemAttention)."""
        return self.blocks[self.memory_layer].attn

    def forward(self, hidden: list, positions, memory_context: dict):
        x, reads = hidden[0], None
        for i, (block, (lo, hi)) in enumerate(zip(self.blocks, self.spans)):
            if i == self.memory_layer:
                x = block(x, positions, **memory_context)
                if isinstance(x, tuple):
                    x, reads = x
            else:
                x = block(x, positions)
            x = x + (hidden[hi] - hidden[lo])  # cross-network residual
        return x if reads is None else (x, reads)

    def zero_sublayers(self) -> SideNet:
        """Zero every sublayer's output projection (attention out, MLP down): each block becomes the identity, so
        the SideNet returns H_L exactly up to rounding (the telescoping check). Returns self."""
        for block in self.blocks:
            for linear in (block.attn.proj, block.mlp.down):
                nn.init.zeros_(linear.weight)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
        return self

    def extra_repr(self) -> str:
        return (f"reduction={self.reduction}, spans={self.spans}, init_from={self.init_from}, "
                f"memory_layer={self.memory_layer}")
