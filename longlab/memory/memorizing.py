"""Memorizing Transformer kNN-augmented attention layer (Wu et al. 2022, arXiv 2203.08913, sec. 3).

Per window of N tokens, for each head:
  local  = causal softmax attention inside the window (RoPE; dense, or sliding when memory_local="sliding");
  mem    = softmax over the top-k memory entries retrieved by cosine similarity, logits tau_h * cos(q, k_mem),
           computed on the pre-RoPE query and keys: memory keys carry no position;
  out    = g * mem + (1 - g) * local,  g = sigmoid(b_h)  (paper eq. in sec. 3.2, one learned scalar per head).
Order: memory is READ first (so a window never retrieves itself), then the window's (k, v) are WRITTEN,
detached (no gradient ever flows into memory). One FIFO KVMemory per batch element (each element is one
document stream); `doc_start` clears an element's memory at a document boundary. While an element's memory is
empty its output is the local attention alone.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import attend
from ..models.layers import SelfAttention, sliding_window_attention
from .store import KVMemory


class MemorizingAttention(SelfAttention):
    """kNN memory attention layer for TinyLM: forward(x (B, N, d), positions (N,), doc_start=None,
    write_memory=True, doc_ids=None) -> (B, N, d). Memory size/top-k from config.memory_size / memory_topk."""

    def __init__(self, config, layer_index: int = 0):
        super().__init__(config, layer_index)
        self.gate_bias = nn.Parameter(torch.zeros(self.n_heads))  # b_h; g = sigmoid(b_h)
        self.log_tau = nn.Parameter(torch.full((self.n_heads,), math.log(10.0)))  # cosine-logit temperature
        self.memory_size, self.topk = config.memory_size, config.memory_topk
        self.memories: list[KVMemory | None] = []  # one per batch lane; None = this lane has no memory
        self.doc_counter: list[int] = []
        self.record = False  # when True, keep the last retrieval (detached) in self.last_read for figures
        self.last_read: dict | None = None

    # ---- memory management ---------------------------------------------------------------------------
    def gate(self) -> torch.Tensor:
        """g_h = sigmoid(b_h), shape (H,)."""
        return torch.sigmoid(self.gate_bias)

    def set_memory_size(self, size: int) -> None:
        """Change the capacity (tokens per head); 0 disables memory. Clears all memories."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"memory size must be an int >= 0, got {size!r}")
        self.memory_size = size
        self.memories, self.doc_counter = [], []

    def set_lane_memory_sizes(self, sizes: list[int], device=None, dtype=None) -> None:
        """One memory per batch lane with its own capacity (0 = no memory): compare memory sizes in one pass."""
        self.memory_size = max(sizes)
        self.memories = [KVMemory(s, self.head_dim, heads=self.n_heads, device=device, dtype=dtype) if s else None
                         for s in sizes]
        self.doc_counter = [0] * len(sizes)

    def reset_memory(self, batch_index: int | None = None) -> None:
        """Empty every batch element's memory (or only `batch_index`'s): a new document starts."""
        targets = range(len(self.memories)) if batch_index is None else [batch_index]
        for b in targets:
            if self.memories[b] is not None:
                self.memories[b].clear()
            self.doc_counter[b] += 1

    def _ensure_memories(self, batch: int, like: torch.Tensor) -> None:
        if len(self.memories) != batch or any(m is not None and m.device != like.device for m in self.memories):
            self.memories = [KVMemory(self.memory_size, self.head_dim, heads=self.n_heads, device=like.device,
                                      dtype=like.dtype) for _ in range(batch)]
            self.doc_counter = [0] * batch

    # ---- the layer -----------------------------------------------------------------------------------
    def local_attention(self, q, k, v):
        if self.config.memory_local == "sliding":
            return sliding_window_attention(q, k, v, self.config.window)
        return attend(q, k, v, causal=True)[0]

    def read_memory(self, q_raw: torch.Tensor):
        """Memory attention for q_raw (B, H, N, D): (out (B, H, N, D), has_memory (B,) bool)."""
        b, h, n, d = q_raw.shape
        out = q_raw.new_zeros(b, h, n, d)
        has = torch.zeros(b, dtype=torch.bool, device=q_raw.device)
        q_unit = torch.nn.functional.normalize(q_raw, dim=-1)
        tau = self.log_tau.exp()[:, None, None]
        reads = []
        for i, memory in enumerate(self.memories):
            if memory is None or len(memory) == 0:
                reads.append(None)
                continue
            found = memory.search(q_raw[i], self.topk, normalize=True)  # no grad: indices only matter
            k_unit = torch.nn.functional.normalize(found.keys, dim=-1)  # (H, N, k, D), detached
            logits = tau * torch.einsum("hnd,hnkd->hnk", q_unit[i], k_unit)  # gradient flows to q only
            weights = logits.softmax(dim=-1)
            out[i] = torch.einsum("hnk,hnkd->hnd", weights, found.values)
            has[i] = True
            reads.append((found, weights.detach()) if self.record else None)
        if self.record:
            self.last_read = {"reads": reads, "gate": self.gate().detach().clone()}
        return out, has

    @torch.no_grad()
    def write_memory(self, k_raw: torch.Tensor, v: torch.Tensor, doc_ids=None) -> None:
        """Append this window's pre-RoPE keys and values (B, H, N, D), detached; positions count from the
        document start (the memory restarts them when cleared)."""
        for i, memory in enumerate(self.memories):
            if memory is not None:
                doc = self.doc_counter[i] if doc_ids is None else int(doc_ids[i])
                memory.add(k_raw[i], v[i], doc_ids=doc)

    def forward(self, x, positions, doc_start=None, write_memory: bool = True, doc_ids=None, **context):
        q_raw, k_raw, v = self.project(x)
        q, k = self.rotate(q_raw, k_raw, positions)
        local = self.local_attention(q, k, v)
        if self.memory_size == 0:
            return self.merge_heads(local)
        self._ensure_memories(x.shape[0], k_raw)
        if doc_start is not None:
            for i in torch.as_tensor(doc_start).nonzero().flatten().tolist():
                self.reset_memory(i)
        mem, has = self.read_memory(q_raw)  # read BEFORE this window is written
        g = self.gate()[None, :, None, None]
        mixed = g * mem + (1 - g) * local
        out = torch.where(has[:, None, None, None], mixed, local)
        if write_memory:
            self.write_memory(k_raw, v, doc_ids)
        return self.merge_heads(out)

    def extra_repr(self) -> str:
        local = self.config.memory_local
        return f"{super().extra_repr()}, memory_size={self.memory_size}, topk={self.topk}, local={local}"
