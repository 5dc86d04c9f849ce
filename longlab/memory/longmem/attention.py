"""LongMem's memory-augmented attention layer (Wang et al. 2023, arXiv 2306.07174, sec. 2.3, "joint attention").

Per head h, window of N tokens, Q from this layer (D = head dim):
    A = softmax(mask(Q K^T / sqrt(D))) V                  local causal attention, Q and K rotated by RoPE
    M_i = softmax(q_i K~_i^T / sqrt(D)) V~_i              memory attention over the K tokens retrieved for query i,
                                                          pre-RoPE q_i against pre-RoPE cached keys (no positions)
    H = (1 - g_h) A + g_h M,   g_h = sigmoid(b_h)         b_h = 0 at init: both halves start with weight 1/2
(the paper writes sigmoid(g) A + (1 - sigmoid(g)) M; here g_h is the weight on memory, as in longlab.memorizing).
K~_i, V~_i come from `ChunkBank.search`: the top K / csz chunks by q_i . mean(chunk keys), expanded to tokens.

Lanes, document resets, read-before-write and detached writes come from `MemoryLayer`. What is written is the
layer's own pre-RoPE keys and values, unless the caller passes `memory_kv=(keys, values)` (B, H, N, D): LongMem
passes a frozen backbone layer's, so cached keys never go stale. A lane whose bank is empty reads nothing: its
output is A alone.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...attention import attend
from ...checks import positive_int
from ..base import LaneRead, MemoryLayer
from ..lanes import Retrieval
from .chunk_bank import ChunkBank, check_chunked

DEFAULT_CHUNK = 4  # csz, the paper's


def memory_attention(q_raw: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
    """M_i = softmax(q_i K~_i^T / sqrt(D)) V~_i: q_raw (..., N, D), keys / values (..., N, K, D) retrieved per query.
    Returns (out (..., N, D), weights (..., N, K))."""
    logits = torch.einsum("...nd,...nkd->...nk", q_raw, keys) / math.sqrt(q_raw.shape[-1])
    weights = logits.softmax(dim=-1)
    return torch.einsum("...nk,...nkd->...nd", weights, values), weights


def fused_attention(q, k, v, q_raw, mem_keys, mem_values, gate):
    """H = (1 - g) A + g M for a batch: q, k, v (B, H, N, D) rotated; q_raw (B, H, N, D) un-rotated;
    mem_keys / mem_values (B, H, N, K, D); gate (H,) in [0, 1]. Returns (B, H, N, D)."""
    local = attend(q, k, v, causal=True)[0]
    mem, _ = memory_attention(q_raw, mem_keys, mem_values)
    g = gate[:, None, None]
    return (1 - g) * local + g * mem


def fused_reference(q, k, v, q_raw, mem_keys, mem_values, gate):
    """Dense float64 reference of `fused_attention`: one explicit causal score matrix, one explicit memory score
    tensor, two softmaxes, the gate. Same shapes; returns float64."""
    q, k, v, q_raw, mem_keys, mem_values, gate = (t.double() for t in (q, k, v, q_raw, mem_keys, mem_values, gate))
    n, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    local = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
    mem_scores = (q_raw[..., None, :] * mem_keys).sum(-1) / math.sqrt(d)
    mem = (mem_scores.softmax(-1)[..., None] * mem_values).sum(-2)
    return (1 - gate[:, None, None]) * local + gate[:, None, None] * mem


class LongMemAttention(MemoryLayer):
    """Memory-augmented layer for TinyLM / the LongMem SideNet: forward(x (B, N, d), positions (N,), doc_start=None,
    write_memory=True, memory_kv=None, return_retrievals=False) -> (B, N, d) (or (out, LayerReads)).
    K = config.memory_topk retrieved tokens (a multiple of csz), csz = config.extra.get("chunk_size", 4),
    capacity config.memory_size tokens per lane (a multiple of csz)."""

    def __init__(self, config, layer_index: int = 0):
        self.chunk_size = positive_int("chunk_size", config.extra.get("chunk_size", DEFAULT_CHUNK), "tokens")
        check_chunked("memory_topk", config.memory_topk, self.chunk_size, "retrieve whole chunks")
        check_chunked("memory_size", config.memory_size, self.chunk_size, "give a memory size in whole chunks")
        super().__init__(config, layer_index)
        self.topk = config.memory_topk
        self.gate_bias = nn.Parameter(torch.zeros(self.n_heads))  # b_h = 0: g_h = 1/2, both halves equal
        self._memory_kv = None  # what this call writes instead of its own keys (set only inside forward)

    def bank_factory(self, capacity: int, device=None, dtype=None) -> ChunkBank:
        return ChunkBank(capacity, self.head_dim, self.n_heads, self.chunk_size, device=device, dtype=dtype)

    def gate(self) -> torch.Tensor:
        """g_h = sigmoid(b_h), the weight of memory attention per head, shape (H,)."""
        return torch.sigmoid(self.gate_bias)

    def forward(self, x, positions, memory_kv=None, **context):
        check_chunked("window length", x.shape[1], self.chunk_size,
                      "use windows whose length is a multiple of chunk_size")
        if memory_kv is not None and (memory_kv[0].shape[:2] != (x.shape[0], self.n_heads)
                                      or memory_kv[0].shape[2] != x.shape[1]):
            raise ValueError(f"memory_kv keys must be (B, H, N, D) = ({x.shape[0]}, {self.n_heads}, {x.shape[1]}, "
                             f"{self.head_dim}), got {tuple(memory_kv[0].shape)}")
        self._memory_kv = memory_kv
        try:
            return super().forward(x, positions, **context)
        finally:
            self._memory_kv = None

    def write(self, k_raw, v, doc_ids=None) -> None:
        """Cache the given memory_kv (e.g. the frozen backbone's), else this layer's own pre-RoPE keys and values."""
        if self._memory_kv is not None:  # the same tokens as given (the last ones, after a forward's write_from)
            k_raw, v = (t[:, :, t.shape[2] - k_raw.shape[2]:] for t in self._memory_kv)
        self.lanes.write(k_raw.detach(), v.detach(), doc_ids)

    def read_lane(self, bank, q_raw, q) -> LaneRead:
        """Token-to-chunk retrieval with the pre-RoPE queries, then softmax over the K retrieved tokens."""
        hits = bank.search(q_raw.detach(), self.topk)  # indices only; gradient flows through q_raw below
        out, weights = memory_attention(q_raw, hits.keys, hits.values)
        record = Retrieval(hits.positions, hits.doc_ids, hits.chunk_scores.detach(), weights.detach())
        return LaneRead(out, None, record)

    def combine(self, q, k, v, reads, **context):
        local = attend(q, k, v, causal=True)[0]
        if reads is None or all(r is None for r in reads):
            return local
        g = self.gate()[:, None, None]
        return torch.stack([local[i] if r is None else (1 - g) * local[i] + g * r.out for i, r in enumerate(reads)])

    def extras(self, reads) -> dict:
        return {"gate": self.gate().detach().clone()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, topk={self.topk}, chunk_size={self.chunk_size}"
