"""Memorizing Transformer kNN-augmented attention layer (Wu et al. 2022, arXiv 2203.08913, sec. 3).

Per window of N tokens, for each head:
  local  = causal softmax attention inside the window (RoPE; dense, or sliding when memory_local="sliding");
  mem    = softmax over the top-k memory entries retrieved by cosine similarity, logits tau_h * cos(q, k_mem),
           computed on the pre-RoPE query and keys: memory keys carry no position;
  out    = g * mem + (1 - g) * local,  g = sigmoid(b_h)  (paper eq. in sec. 3.2, one learned scalar per head).
Lanes, document resets, read-before-write and detached writes come from `MemoryLayer` (longlab.memory.base):
one FIFO KVMemory per batch lane, emptied when `doc_start` marks the lane's new document. While a lane's memory
is empty its output is the local attention alone.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import attend
from ..models.layers import sliding_window_attention
from .base import LaneRead, MemoryLayer
from .lanes import Retrieval


class MemorizingAttention(MemoryLayer):
    """kNN memory attention layer for TinyLM: forward(x (B, N, d), positions (N,), doc_start=None,
    write_memory=True, doc_ids=None, return_retrievals=False) -> (B, N, d) (or (out, LayerReads)).
    Memory size / top-k from config.memory_size / memory_topk."""

    def __init__(self, config, layer_index: int = 0):
        super().__init__(config, layer_index)
        self.gate_bias = nn.Parameter(torch.zeros(self.n_heads))  # b_h; g = sigmoid(b_h)
        self.log_tau = nn.Parameter(torch.full((self.n_heads,), math.log(10.0)))  # cosine-logit temperature
        self.topk = config.memory_topk

    def gate(self) -> torch.Tensor:
        """g_h = sigmoid(b_h), shape (H,)."""
        return torch.sigmoid(self.gate_bias)

    def local_attention(self, q, k, v):
        if self.config.memory_local == "sliding":
            return sliding_window_attention(q, k, v, self.config.window)
        return attend(q, k, v, causal=True)[0]

    def read_lane(self, bank, q_raw, q) -> LaneRead:
        """Top-k by cosine on the pre-RoPE query; softmax of tau * cos over them (gradient reaches q only)."""
        found = bank.search(q_raw, self.topk, normalize=True)  # no grad: indices only matter
        q_unit = torch.nn.functional.normalize(q_raw, dim=-1)
        k_unit = torch.nn.functional.normalize(found.keys, dim=-1)  # (H, N, k, D), detached
        logits = self.log_tau.exp()[:, None, None] * torch.einsum("hnd,hnkd->hnk", q_unit, k_unit)
        weights = logits.softmax(dim=-1)
        out = torch.einsum("hnk,hnkd->hnd", weights, found.values)
        return LaneRead(out, None, Retrieval(found.positions, found.doc_ids, found.scores.detach(), weights.detach()))

    def combine(self, q, k, v, reads, **context):
        local = self.local_attention(q, k, v)
        if reads is None or all(r is None for r in reads):
            return local
        g = self.gate()[:, None, None]
        return torch.stack([local[i] if r is None else g * r.out + (1 - g) * local[i] for i, r in enumerate(reads)])

    def extras(self, reads) -> dict:
        return {"gate": self.gate().detach().clone()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, topk={self.topk}, local={self.config.memory_local}"
