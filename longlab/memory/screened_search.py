"""Exact top-k on CPUs with a bfloat16 screen: score every key in bfloat16, keep `spare` x k candidates per query,
rescore those in float32, and prove per query that no key left out could have made its top-k.

Why: the float32 matmul is the floor of an exact search (16M keys x 1024 queries is 2.2 TFLOP), and CPUs with
AVX512-BF16 (or AMX) run a bfloat16 matmul 2.5-3x faster. Rounding makes the screen's scores inexact, so it
only chooses candidates; the result is the float32 top-k of the candidates, and it is the exact top-k whenever

    k-th best float32 score among the candidates  >=  lowest screened score kept  +  error bound,

because every key left out screened at most that lowest score, so its float32 score is at most that plus the
bound. Queries where this does not hold (keys bunched closer than the bound) are searched again in float32.

Error bound of one screened score s~ against the float32 score s (u = 2^-8, bfloat16's unit roundoff):
q and k are each rounded (relative u per element), the products summed in float32 (D * 2^-24 relative, for
either side) and the sum rounded to bfloat16 (u), so |s~ - s| <= ((1 + u)^3 - 1 + 2 D 2^-24) sum_i |q_i k_i|,
and sum_i |q_i k_i| <= |q| |k| (Cauchy-Schwarz) <= |q| max_j |k_j|.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .search import GROUP, THRESHOLD_CHUNK, WARM_BLOCKS, threshold_topk

SPARE = 4  # candidates per query, as a multiple of k: a gap of ln(4) in the score tail's log-density
SAFETY = 1.01  # the bound times this, for rounding in the bound's own arithmetic
# Queries per head below which the screen does not pay: each key block is converted to bfloat16 as it is read,
# a pass as costly as a matrix-vector product, so a handful of queries (decoding) stays float32.
MIN_QUERIES = 64
# Keys below which the screen does not pay: its warm-up blocks keep spare * k candidates and its rescoring is a
# fixed cost. Measured with 1024 queries on 2 threads, group maxima on the bits (best of 2): 512k keys 1.18 s
# screened vs 1.13 s float32, 1M 1.51 vs 1.73 s, 2M 1.89 vs 3.06 s, 4M 3.4 vs 6.9 s, 16M 12.2 vs 27.2 s.
MIN_KEYS = 2**21


@functools.cache
def fast_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); without it torch emulates
    bfloat16 and the screen would be slower than float32. Linux only (reads /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def screen_error_bound(queries: torch.Tensor, keys: torch.Tensor,
                       key_norms: torch.Tensor | None = None) -> torch.Tensor:
    """(H, nq) bound on |bfloat16-screened score - float32 score| over every key of each head (module doc).
    key_norms: (H, N) |k| if the caller keeps them (KVMemory does), else computed (a pass over every key)."""
    u = torch.finfo(torch.bfloat16).eps / 2
    relative = (1 + u) ** 3 - 1 + 2 * queries.shape[-1] * torch.finfo(torch.float32).eps / 2
    if key_norms is None:
        key_norms = torch.linalg.vector_norm(keys, dim=-1)
    key_norm = key_norms.amax(-1)  # (H,)
    return SAFETY * relative * torch.linalg.vector_norm(queries, dim=-1) * key_norm[:, None]


def screen_worthwhile(queries: torch.Tensor, keys: torch.Tensor, k: int, key_scale, chunk: int | None) -> bool:
    """The screen pays for itself: float32 on a CPU with hardware bfloat16, no per-key scale, at least
    MIN_QUERIES queries and MIN_KEYS keys, past the threshold path's warm-up blocks with room for more candidates
    than k."""
    num_keys = keys.shape[1]
    return (queries.device.type == "cpu" and queries.dtype == keys.dtype == torch.float32 and key_scale is None
            and queries.shape[1] >= MIN_QUERIES and num_keys >= MIN_KEYS
            and num_keys > WARM_BLOCKS * (chunk or THRESHOLD_CHUNK) and num_keys > SPARE * k > 0
            and fast_bf16_matmul())


@torch.no_grad()
def screened_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int | None = None,
                  group: int = GROUP, spare: int = SPARE, stats: dict | None = None,
                  key_norms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`exact_topk` through a bfloat16 screen (module doc): queries (H, nq, D), keys (H, N, D) float32; returns
    (scores, indices), both (H, nq, min(k, N)), sorted by descending float32 score. Exact: each query either
    passes the certificate or is searched again in float32. stats: a dict that gets "redone", the number of
    (head, query) pairs searched again. key_norms: (H, N) |k|, kept by the caller (else one pass computes them)."""
    if queries.dtype != torch.float32 or keys.dtype != torch.float32:
        raise ValueError(f"the bfloat16 screen's error bound is for float32 scores; got {queries.dtype} queries "
                         f"and {keys.dtype} keys")
    heads, num_queries, dim = queries.shape
    chunk = chunk or THRESHOLD_CHUNK
    k = min(k, keys.shape[1])
    wide = min(keys.shape[1], spare * k)
    screened, index = threshold_topk(queries, keys, wide, chunk=chunk, group=group, compute_dtype=torch.bfloat16)
    picked = keys.gather(1, index.reshape(heads, -1, 1).expand(-1, -1, dim)).view(heads, num_queries, wide, dim)
    rescored = torch.einsum("hqd,hqcd->hqc", queries, picked)
    scores, best = rescored.topk(k, dim=-1, sorted=True)
    index = index.gather(-1, best)
    lowest_kept = screened.float().amin(-1)
    certified = scores[..., -1] >= lowest_kept + screen_error_bound(queries, keys, key_norms)
    if stats is not None:
        stats["redone"] = int((~certified).sum())
    for head in range(heads):
        redo = (~certified[head]).nonzero().flatten()
        if redo.numel():  # keys bunched within the bound: these queries the float32 way
            again, again_index = threshold_topk(queries[head : head + 1, redo], keys[head : head + 1], k, None,
                                                chunk, group)
            scores[head, redo], index[head, redo] = again[0], again_index[0]
    return scores, index
