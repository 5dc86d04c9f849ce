"""Exact top-k inner-product search in bounded memory: chunked matmul + per-chunk top-k + one final merge.

Scoring all N keys at once would need a (heads, nq, N) score matrix (4 GB for 1024 queries x 1M keys);
instead keys are visited in chunks, each chunk keeps only its own top-k, and the candidates
(heads, nq, k * chunks) are merged by one last top-k. Exact: the global top-k of a union is the top-k
of the per-part top-ks.
"""
from __future__ import annotations

import torch

# Score block budget in elements (heads * nq * chunk); 2**24 float32 = 64 MB, fast on CPU in our bench.
SCORE_BLOCK_ELEMENTS = 2**24


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
    cand_scores, cand_index = [], []
    for start in range(0, num_keys, chunk):
        block = torch.matmul(queries, keys[:, start : start + chunk].transpose(1, 2))
        if key_scale is not None:
            block *= key_scale[:, None, start : start + chunk]
        top_scores, top_index = block.topk(min(k, block.shape[-1]), dim=-1)
        cand_scores.append(top_scores)
        cand_index.append(top_index + start)
    if len(cand_scores) == 1:
        return cand_scores[0], cand_index[0]
    scores, pick = torch.cat(cand_scores, dim=-1).topk(k, dim=-1)
    return scores, torch.cat(cand_index, dim=-1).gather(-1, pick)
