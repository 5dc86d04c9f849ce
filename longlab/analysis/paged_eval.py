"""Measure Quest-style page selection (longlab.attention.paged_kv) on a model's real keys or random ones.

For a cache of N keys and a set of decoding queries: recall of each head's true top-32 keys by q . k, the
output error against dense attention over the whole cache, the cache bytes read and the time per decoded
token, for several numbers of pages kept K. Keys with locality (a trained model's) are what page bounds need:
random Gaussian keys spread every page's min/max wide, so the bounds barely rank pages.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..attention.paged_kv import PagedKVCache, topk_recall
from ..checks import positive_int


@torch.no_grad()
def capture_qkv(model, tokens: torch.Tensor, layer: int, window: int | None = None, batch: int = 16):
    """Pre-RoPE q, k, v (H, N, D) of attention layer `layer` for `tokens` (N,) read in windows of the model's
    context (each window on its own, as the model was trained)."""
    window = window or model.config.context
    positive_int("window", window, "tokens")
    n = tokens.shape[0] // window * window
    rows = tokens[:n].view(-1, window)
    attn = model.blocks[layer].attn
    captured = []
    handle = attn.qkv.register_forward_hook(lambda mod, inp, out: captured.append(out.detach()))
    try:
        for start in range(0, rows.shape[0], batch):
            model(rows[start:start + batch])
    finally:
        handle.remove()
    qkv = torch.cat(captured).view(-1, window, 3, attn.n_heads, attn.head_dim)  # (windows, W, 3, H, D)
    q, k, v = qkv.permute(2, 3, 0, 1, 4).reshape(3, attn.n_heads, n, attn.head_dim)
    return q, k, v


def _timed(fn, repeats: int) -> tuple[object, float]:
    result = fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return result, (time.perf_counter() - start) / repeats


def selection_rows(keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor, page_size: int,
                   pages_kept: list[int], top: int = 32, repeats: int = 3, label: str = "") -> list[dict]:
    """One row per K: mean recall of the true top-`top` keys, mean relative error ||out - dense|| / ||dense||
    (per head and query), bytes read and seconds per decoded token (paged vs dense). keys/values (H, N, D),
    queries (Q, H, D)."""
    heads, n, d = keys.shape
    capacity = -(-n // page_size) * page_size
    cache = PagedKVCache(heads, d, page_size, capacity, value_dim=values.shape[-1], dtype=keys.dtype)
    cache.append(keys, values)
    dense = [cache.dense_attend(q)[0] for q in queries]
    _, dense_s = _timed(lambda: cache.dense_attend(queries[0]), repeats)
    rows = []
    for kept in tqdm(pages_kept, desc=f"paged {label} N={n}", unit="K"):
        recall, error = [], []
        for q, ref in zip(queries, dense):
            out, _, pages = cache.attend(q, kept)
            recall.append(topk_recall(q, keys, pages, page_size, top))
            error.append(float(((out - ref).norm(dim=-1) / ref.norm(dim=-1)).mean()))
        _, paged_s = _timed(lambda: cache.attend(queries[0], kept), repeats)
        rows.append({"keys": label, "cached_tokens": n, "page_size": page_size, "pages": cache.num_pages,
                     "pages_kept": kept, "fraction_read": min(1.0, (kept + 1) / cache.num_pages),
                     f"recall_top{top}": sum(recall) / len(recall), "relative_error": sum(error) / len(error),
                     "bytes_read": cache.bytes_read(kept), "dense_bytes": cache.bytes_read(None),
                     "paged_s": paged_s, "dense_s": dense_s})
    return rows
