"""Exact top-k inner-product search in bounded memory: chunked matmul + group-max pre-selection + batched merges.

Scoring all N keys at once would need a (heads, nq, N) score matrix (4 GB for 1024 queries x 1M keys);
instead keys are visited in chunks, each scored into one reused block (a fresh 128 MB block per chunk costs
page faults that halve the matmul's speed). Within a block, keys are cut into groups of GROUP: a query's top-k
keys lie in its k groups with the highest maxima (a key outside them is beaten by k group maxima, so by k
keys), so only those groups' scores are kept as candidates: one cheap max pass over the block and a top-k
over 1/GROUP as many numbers, instead of a top-k over every score. Candidates are merged every few chunks.
Exact: the global top-k of a union is the top-k of the per-part top-ks.

On CPUs `threshold_topk` goes further: a running threshold (each query's k-th best so far) compared against
the group maxima, not against every score. Per score that is one max pass; a compare-and-pack over every score
(tried first) took 3.5x the matmul time at 1024 queries x 256k keys on 2 threads, more than the top-k it saved.
"""
from __future__ import annotations

import torch

# Score block budget in elements (heads * nq * chunk): 2**25 float32 = 128 MB. Larger blocks amortise the
# per-chunk selection; beyond this the block no longer pays for itself and memory grows.
SCORE_BLOCK_ELEMENTS = 2**25
# Candidates are merged once this many chunks' top-ks have been collected (one small top-k per merge).
MERGE_EVERY = 8
# Keys per group of the group-max pre-selection (measured on 2 threads, 1024 queries x 32k-key blocks: the max
# over groups of 32 takes 1/6 of a full top-k; groups of 8 or 16 reduce far slower in PyTorch).
GROUP = 32
# Keys per block of the threshold path (1024 queries x 4096 keys = 16 MB of scores; 2k-32k measured alike).
THRESHOLD_CHUNK = 4096
WARM_BLOCKS = 16  # blocks searched the per-block way first, for the starting thresholds
# Score dtypes whose group maxima the threshold path may take on the bits, as ints of the same width.
SAME_WIDTH_INT = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32,
                  torch.float64: torch.int64}


def _chunk_candidates(block: torch.Tensor, k: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, index into the block's last dim) of candidates that surely include each row's top-k: the k
    groups of `group` keys with the highest maxima (all their keys), or the plain top-k when that saves
    nothing (a block narrower than a few k groups, or not cut evenly)."""
    width = block.shape[-1]
    if group < 2 or width % group or width < 4 * k * group:
        return block.topk(min(k, width), dim=-1, sorted=False)
    grouped = block.unflatten(-1, (width // group, group))
    _, best = grouped.amax(-1).topk(k, dim=-1, sorted=False)  # (H, nq, k) group ids
    scores = grouped.gather(-2, best[..., None].expand(*best.shape, group)).flatten(-2)
    index = (best[..., None] * group + torch.arange(group, device=block.device)).flatten(-2)
    return scores, index


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
    group: int = GROUP,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys by inner product for every query, exact, without materialising the full score matrix.

    queries (H, Nq, D), keys (H, N, D), key_scale optional (H, N) multiplier per key score (e.g. 1/|k| for
    cosine similarity). Returns (scores, indices), both (H, Nq, min(k, N)), sorted by descending score.
    score(i, j) = q_i . k_j * key_scale_j (the maximum inner product search of Memorizing Transformer, sec. 3).
    chunk: keys per score block (default: about SCORE_BLOCK_ELEMENTS scores); group: keys per group of the
    pre-selection (1 = a plain top-k of every block). method: "blocks" (each block's candidates kept, merged
    every few blocks), "threshold" (`threshold_topk`: later blocks keep only groups that reach each query's
    running k-th best; ~1.4x faster on CPU, but one nonzero per block, a device sync on GPUs) or "auto"
    (threshold on CPU, blocks elsewhere and for a single query per head: decoding one token, where the blocks
    path was 1.4-1.8x faster, e.g. 9.7 against 15.0 ms for 4 heads x 256k keys). `screened_search.screened_topk`
    builds on this one (a bfloat16 screen, float32 rescoring and a per-query proof of exactness); `KVMemory.search`
    picks it where it pays.
    """
    if method not in ("auto", "blocks", "threshold"):
        raise ValueError(f"method must be 'auto', 'blocks' or 'threshold', got {method!r}")
    single = queries.shape[1] == 1  # one query per head: a decode step
    if method == "threshold" or (method == "auto" and queries.device.type == "cpu" and group > 1 and not single):
        return threshold_topk(queries, keys, k, key_scale, chunk or THRESHOLD_CHUNK, group)
    heads, num_queries, _ = queries.shape
    num_keys = keys.shape[1]
    k = min(k, num_keys)
    if k == 0 or num_queries == 0:
        empty = queries.new_empty(heads, num_queries, 0)
        return empty, torch.empty(heads, num_queries, 0, dtype=torch.long, device=queries.device)
    chunk = chunk or default_chunk(heads, num_queries, num_keys)
    kept_scores, kept_index = [], []

    def merge(final: bool) -> None:
        scores, index = torch.cat(kept_scores, dim=-1), torch.cat(kept_index, dim=-1)
        # Fewer than k candidates so far (chunks narrower than k): keep them all; the final merge has >= k.
        scores, pick = scores.topk(min(k, scores.shape[-1]), dim=-1, sorted=final)
        kept_scores[:], kept_index[:] = [scores], [index.gather(-1, pick)]

    buffer = None
    for start in range(0, num_keys, chunk):
        part = keys[:, start : start + chunk].transpose(1, 2)
        if buffer is None or buffer.shape[-1] != part.shape[-1]:
            buffer = queries.new_empty(heads, num_queries, part.shape[-1])
        block = torch.matmul(queries, part, out=buffer)
        if key_scale is not None:
            block *= key_scale[:, None, start : start + chunk]
        scores, index = _chunk_candidates(block, k, group)
        kept_scores.append(scores)
        kept_index.append(index + start)
        if len(kept_scores) > MERGE_EVERY:
            merge(final=False)
    merge(final=True)
    return kept_scores[0], kept_index[0]


class _Candidates:
    """Per-row running top-k kept as (rows, k) plus a flat pending list of (row, score, index) candidates.
    `merge` packs the pending ones per row (padding -inf) and keeps the k best of each row; `threshold` is then
    each row's k-th best so far, a lower bound of its final k-th best."""

    def __init__(self, scores: torch.Tensor, index: torch.Tensor):
        self.scores, self.index = scores, index  # (R, k)
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.count = 0
        self.threshold = scores.amin(-1)  # (R,)

    def add(self, rows: torch.Tensor, scores: torch.Tensor, index: torch.Tensor) -> None:
        self.pending.append((rows, scores, index))
        self.count += rows.numel()

    def merge(self) -> None:
        if not self.pending:
            return
        rows, scores, index = (torch.cat(parts) for parts in zip(*self.pending))
        self.pending, self.count = [], 0
        order = torch.argsort(rows, stable=True)
        rows, scores, index = rows[order], scores[order], index[order]
        counts = torch.bincount(rows, minlength=self.scores.shape[0])
        slot = torch.arange(rows.numel(), device=rows.device) - (counts.cumsum(0) - counts)[rows]
        width = int(counts.max())
        packed = scores.new_full((self.scores.shape[0], width), float("-inf"))
        packed_index = index.new_zeros(self.scores.shape[0], width)
        packed[rows, slot], packed_index[rows, slot] = scores, index
        merged, merged_index = torch.cat([self.scores, packed], 1), torch.cat([self.index, packed_index], 1)
        self.scores, pick = merged.topk(self.scores.shape[1], dim=-1, sorted=False)
        self.index = merged_index.gather(-1, pick)
        self.threshold = self.scores.amin(-1)


def groups_reaching(grouped: torch.Tensor, threshold: torch.Tensor, bits: torch.dtype | None = None) -> torch.Tensor:
    """grouped (H, groups, group, nq) scores, threshold (H, 1, nq): (H, groups, nq), whether each group's max
    reaches the threshold. bits: an int dtype of the scores' width, for thresholds that are all positive: a positive
    float orders like its bits read as an int, and a negative one reads as a negative int, so against a positive
    threshold the int max decides as the float max would, and PyTorch's CPU max is faster on ints (~10x for
    bfloat16, ~1.7x for float32, measured after each block's matmul)."""
    if bits is None:
        return grouped.amax(2) >= threshold
    return grouped.view(bits).amax(2) >= threshold.view(bits)


@torch.no_grad()
def threshold_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, key_scale: torch.Tensor | None = None,
                   chunk: int = THRESHOLD_CHUNK, group: int = GROUP,
                   compute_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`exact_topk` for CPUs, same arguments and result: blocks are scored keys-major (H, chunk, nq) into one
    reused buffer; the top-k of the first WARM_BLOCKS blocks gives every query a threshold (its k-th best so
    far), and in every later block only the groups of `group` keys whose maximum reaches that threshold are kept
    (a group below it cannot hold a final top-k key). Then almost no group passes, so the work per block is the
    matmul, one max pass and one compare over 1/group of the scores. Memories of up to WARM_BLOCKS blocks are
    searched the per-block way only. compute_dtype: score in this dtype (queries once, each key block as it is
    read; e.g. bfloat16 for `screened_topk`), scores returned in it."""
    if compute_dtype is not None:
        queries = queries.to(compute_dtype)
    heads, num_queries, _ = queries.shape
    num_keys = keys.shape[1]
    k = min(k, num_keys)
    chunk = -(-max(chunk, k, group) // group) * group  # whole groups, and the first block holds >= k keys
    # The first WARM_BLOCKS blocks go through the per-block path: their top-k gives every query a threshold high
    # enough that later blocks pass only a few groups (a threshold from one small block lets many through).
    warm = WARM_BLOCKS * chunk
    if k == 0 or num_queries == 0 or num_keys <= warm:
        return exact_topk(queries, keys.to(queries.dtype), k, key_scale=key_scale, group=group, method="blocks")
    scores, index = exact_topk(queries, keys[:, :warm].to(queries.dtype), k,
                               None if key_scale is None else key_scale[:, :warm], group=group, method="blocks")
    kept = _Candidates(scores.reshape(-1, k), index.reshape(-1, k))
    rows_of = torch.arange(heads * num_queries, device=queries.device).view(heads, 1, num_queries)
    q_t = queries.transpose(1, 2)  # (H, D, nq)
    buffer = queries.new_empty(heads, chunk, num_queries)
    bits = None  # an int type whose max stands in for the scores' group max, once every threshold is positive
    for start in range(warm, num_keys, chunk):
        stop = min(num_keys, start + chunk)
        block = torch.bmm(keys[:, start:stop].to(queries.dtype), q_t, out=buffer[:, : stop - start])  # (H, C, nq)
        if key_scale is not None:
            block *= key_scale[:, start:stop, None]
        width = stop - start
        groups = width // group
        if groups == 0 or width % group:  # a last block not cut evenly: every score of it is a candidate
            hit = block >= kept.threshold.view(heads, 1, num_queries)
            h, j, q = hit.nonzero(as_tuple=True)
            kept.add(rows_of[h, 0, q], block[h, j, q], j + start)
        else:
            grouped = block.view(heads, groups, group, num_queries)
            if not bits and bool((kept.threshold > 0).all()):  # thresholds only rise: from here on all positive
                bits = SAME_WIDTH_INT.get(block.dtype)
            hit = groups_reaching(grouped, kept.threshold.view(heads, 1, num_queries), bits)  # (H, groups, nq)
            h, g, q = hit.nonzero(as_tuple=True)
            if h.numel():
                members = torch.arange(group, device=block.device)
                kept.add(rows_of[h, 0, q].repeat_interleave(group), grouped[h, g, :, q].reshape(-1),
                         (start + g[:, None] * group + members).reshape(-1))
        if kept.count > 4 * kept.scores.numel():  # keep the pending list small; the thresholds rise with it
            kept.merge()
    kept.merge()
    scores, order = kept.scores.sort(dim=-1, descending=True)
    return scores.view(heads, num_queries, k), kept.index.gather(-1, order).view(heads, num_queries, k)
