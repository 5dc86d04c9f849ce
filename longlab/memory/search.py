"""Exact top-k inner-product search in bounded memory: chunked matmul + per-chunk top-k + one final merge.

Scoring all N keys at once would need a (heads, nq, N) score matrix (4 GB for 1024 queries x 1M keys);
instead keys are visited in cache-sized chunks and a running top-k per query is kept: a chunk's top-k is
merged into the rows whose chunk maximum beats their current k-th best score, the other rows skip the
chunk. Exact: the global top-k of a union is the top-k of the per-part top-ks, and a part whose best
score is below the current k-th best contributes nothing.
"""
from __future__ import annotations

import torch

# Score block budget in elements (heads * nq * chunk); 2**21 float32 = 8 MB stays in a CPU's last-level
# cache between the matmul that writes it and the max / top-k passes that read it.
SCORE_BLOCK_ELEMENTS = 2**21


def default_chunk(heads: int, num_queries: int, num_keys: int) -> int:
    """Keys per chunk so one score block stays near SCORE_BLOCK_ELEMENTS (at least 1024 keys)."""
    chunk = max(1024, SCORE_BLOCK_ELEMENTS // max(1, heads * num_queries))
    return min(chunk, max(1, num_keys))


@torch.no_grad()
def exact_topk(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    key_scale: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys by inner product for every query, exact, without materialising the full score matrix.

    queries (H, Nq, D), keys (H, N, D), key_scale optional (H, N) multiplier per key score (e.g. 1/|k| for
    cosine similarity). Returns (scores, indices), both (H, Nq, min(k, N)), sorted by descending score.
    score(i, j) = q_i . k_j * key_scale_j (the maximum inner product search of Memorizing Transformer, sec. 3).
    """
    heads, num_queries, _ = queries.shape
    num_keys = keys.shape[1]
    k = min(k, num_keys)
    if k == 0 or num_queries == 0:
        empty = queries.new_empty(heads, num_queries, 0)
        return empty, torch.empty(heads, num_queries, 0, dtype=torch.long, device=queries.device)
    chunk = chunk or default_chunk(heads, num_queries, num_keys)
    rows_total = heads * num_queries
    best_scores = queries.new_full((rows_total, k), float("-inf"))
    best_index = torch.zeros(rows_total, k, dtype=torch.long, device=queries.device)
    for start in range(0, num_keys, chunk):
        block = torch.matmul(queries, keys[:, start : start + chunk].transpose(1, 2))
        if key_scale is not None:
            block *= key_scale[:, None, start : start + chunk]
        block = block.view(rows_total, -1)
        # Only rows whose block maximum beats their current k-th best can change: after the first chunks
        # that is a small fraction, so most blocks cost one max pass instead of a top-k.
        rows = (block.amax(-1) > best_scores[:, -1]).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        sub = block if rows.numel() == rows_total else block.index_select(0, rows)
        top_scores, top_index = sub.topk(min(k, sub.shape[-1]), dim=-1)
        cand_scores = torch.cat([best_scores.index_select(0, rows), top_scores], dim=-1)
        cand_index = torch.cat([best_index.index_select(0, rows), top_index + start], dim=-1)
        scores, pick = cand_scores.topk(k, dim=-1)
        best_scores.index_copy_(0, rows, scores)
        best_index.index_copy_(0, rows, cand_index.gather(-1, pick))
    return best_scores.view(heads, num_queries, k), best_index.view(heads, num_queries, k)
