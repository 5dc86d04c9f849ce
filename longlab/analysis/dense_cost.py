"""What dense attention costs as the sequence grows: FLOPs and bytes vs N, computed from the Dense pattern.

For one attention layer over a batch of sequences of length N with H heads of width d
(Vaswani et al. 2017, arXiv 1706.03762, eq. 1: softmax(Q K^T / sqrt(d)) V):
- FLOPs of Q K^T and P V: 4 d H N^2 (non-causal), read from `Dense(causal).flops` so the count is the one
  the patterns module defines and tests;
- score matrix bytes: H N^2 * bytes per element, what a naive kernel materializes (and keeps for backward);
- flash working set: q, k, v, out plus the float32 lse, H N (4 d * bytes + 4): memory-efficient exact
  attention (FlashAttention, arXiv 2205.14135) never stores the N x N matrix, but still does every FLOP;
- KV cache bytes: 2 H N d * bytes per layer, what generation keeps around.
Defaults describe one layer of a 7B-class model (32 heads x 128, bf16) at batch size 1.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from longlab.attention.patterns import Dense
from longlab.checks import positive_int


def dense_cost(n: int, head_dim: int = 128, heads: int = 32, batch: int = 1, dtype_bytes: int = 2,
               causal: bool = False) -> dict:
    """Cost of one dense attention layer at sequence length n (see module docstring for the formulas).

    Returns {"n", "flops", "score_bytes", "flash_bytes", "kv_cache_bytes"} (ints/floats, per layer).
    """
    for name, value in (("n", n), ("head_dim", head_dim), ("heads", heads), ("batch", batch),
                        ("dtype_bytes", dtype_bytes)):
        positive_int(name, value)
    return {
        "n": n,
        "flops": batch * Dense(causal=causal).flops(n, head_dim, heads),
        "score_bytes": batch * heads * n * n * dtype_bytes,
        "flash_bytes": batch * heads * n * (4 * head_dim * dtype_bytes + 4),
        "kv_cache_bytes": batch * 2 * heads * n * head_dim * dtype_bytes,
    }


def dense_cost_table(ns: Iterable[int], **kwargs) -> list[dict]:
    """dense_cost for every n in ns (same keyword arguments), one dict per row."""
    ns = list(ns)
    if not ns:
        raise ValueError("ns must contain at least one sequence length, e.g. [1024, 4096, 16384]")
    return [dense_cost(n, **kwargs) for n in ns]


def max_n_for_memory(memory_bytes: float, heads: int = 32, batch: int = 1, dtype_bytes: int = 2) -> int:
    """Largest N whose score matrix (batch * heads * N^2 * dtype_bytes) fits in memory_bytes."""
    if not memory_bytes > 0:
        raise ValueError(f"memory_bytes must be > 0, got {memory_bytes!r}")
    for name, value in (("heads", heads), ("batch", batch), ("dtype_bytes", dtype_bytes)):
        positive_int(name, value)
    per = batch * heads * dtype_bytes
    n = math.isqrt(int(memory_bytes // per))
    while per * (n + 1) ** 2 <= memory_bytes:  # isqrt of the floored quotient can be one short
        n += 1
    return n


def format_bytes(value: float) -> str:
    """1536 -> '1.5 KiB' (binary prefixes)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while abs(value) >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.3g} {units[i]}"


def format_count(value: float) -> str:
    """2.5e12 -> '2.5 T' (decimal prefixes, for FLOPs)."""
    units = ["", " k", " M", " G", " T", " P", " E", " Z"]
    i = 0
    while abs(value) >= 1000 and i < len(units) - 1:
        value, i = value / 1000, i + 1
    return f"{value:.3g}{units[i]}"
