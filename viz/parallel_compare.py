"""Helpers for notebook 07 and the parallel figures: demo options, seeded inputs, and running methods in both
worlds to tabulate bytes and times."""
from __future__ import annotations

import torch

from longlab.parallel import cost, get_method, launch, simulate
from longlab.parallel.comm import AlphaBeta


def method_options(method: str, seq_len: int, base: int = 64) -> dict:
    """Demo options of a method at length `seq_len` (its spec's `example_options`; LongNet: the geometric
    schedule from segment `base`)."""
    return get_method(method).example_options(seq_len, base)


def random_qkv(seq_len, heads, head_dim=16, kv_heads=None, batch=1, seed=0, dtype=torch.float32):
    """Seeded random q (B, H, N, D), k, v (B, Hk, N, D)."""
    gen = torch.Generator().manual_seed(seed)
    hk = kv_heads or heads
    return (torch.randn(batch, heads, seq_len, head_dim, generator=gen, dtype=dtype),
            torch.randn(batch, hk, seq_len, head_dim, generator=gen, dtype=dtype),
            torch.randn(batch, hk, seq_len, head_dim, generator=gen, dtype=dtype))


def simulated_bytes(method, world, seq_len, heads, head_dim=16, base: int = 64) -> list[int]:
    """Bytes sent per rank counted by `SimGroup` (forward, float32) for random inputs."""
    q, k, v = random_qkv(seq_len, heads, head_dim)
    _, trace = simulate(method, q, k, v, world, **method_options(method, seq_len, base))
    return trace.sent("forward")


def measure_methods(methods, world, seq_len, heads, head_dim=16, causal=False, model: AlphaBeta | None = None,
                    timeout: float = 120.0, base: int = 64) -> list[dict]:
    """Run each method on `world` real gloo processes; one row per (method, rank) with measured seconds,
    bytes sent (and the formula's), and the alpha-beta model's communication seconds."""
    model = model or AlphaBeta()
    q, k, v = random_qkv(seq_len, heads, head_dim)
    rows = []
    for method in methods:
        opts = method_options(method, seq_len, base)
        _, trace = launch(method, q, k, v, world, causal=causal, timeout=timeout, **opts)
        work = cost.Workload(seq_len, heads, head_dim, opts=opts)
        formula = cost.bytes_per_rank(method, world, work)
        modelled = cost.comm_time(method, world, work, model)
        for rank in range(world):
            rows.append({"method": method, "rank": rank, "measured_s": trace.rank_times[rank],
                         "bytes_sent": trace.sent("forward")[rank], "formula_bytes": formula[rank],
                         "model_comm_s": modelled})
    return rows
