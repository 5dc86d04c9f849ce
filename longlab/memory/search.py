"""Exact top-k inner-product search in bounded memory: chunked matmul + per-chunk top-k + one final merge.

Scoring all N keys at once would need a (heads, nq, N) score matrix (4 GB for 1024 queries x 1M keys);
instead keys are visited in cache-sized chunks and a running top-k per query is kept: only the entries of
a chunk that beat their row's current k-th best score can enter it, and after the first chunks they are
few (about k * chunk / keys seen per row), so they are packed and merged without a top-k over the whole
chunk. Exact: the global top-k of a union is the top-k of the per-part top-ks, and an entry below the
current k-th best never enters it.
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
        above = block > best_scores[:, -1:]  # entries that beat a row's current k-th best score
        counts = above.sum(-1)
        widest = int(counts.max())
        if widest == 0:
            continue
        if widest > block.shape[-1] // 8:  # early chunks: a top-k of the whole block is cheaper
            cand_scores, cand_index = block.topk(min(k, block.shape[-1]), dim=-1)
            cand_index = cand_index + start
        else:
            # After the first chunks only a few entries per row beat the k-th best: pack them (row-major
            # order from nonzero) into a (rows, widest) block, which is far cheaper than a top-k per row.
            row, col = above.nonzero(as_tuple=True)
            slot = torch.arange(row.numel(), device=row.device) - (counts.cumsum(0) - counts)[row]
            cand_scores = block.new_full((rows_total, widest), float("-inf"))
            cand_index = torch.zeros(rows_total, widest, dtype=torch.long, device=block.device)
            cand_scores[row, slot] = block[row, col]
            cand_index[row, slot] = col + start
        scores, pick = torch.cat([best_scores, cand_scores], dim=-1).topk(k, dim=-1)
        best_index = torch.cat([best_index, cand_index], dim=-1).gather(-1, pick)
        best_scores = scores
    return best_scores.view(heads, num_queries, k), best_index.view(heads, num_queries, k)
