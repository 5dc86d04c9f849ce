"""Paged KV cache: the page score bounds every logit, selection attends exactly over its pages, K = all is dense."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention import reference_attention
from longlab.attention.paged_kv import PagedKVCache, topk_recall


def _filled(heads, n, d, page, seed, chunks=3):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(heads, n, d, generator=g, dtype=torch.float64)
    v = torch.randn(heads, n, d + 1, generator=g, dtype=torch.float64)
    cache = PagedKVCache(heads, d, page, -(-n // page) * page + page, value_dim=d + 1, dtype=torch.float64)
    cuts = sorted(set([0, n, *torch.randint(0, n + 1, (chunks,), generator=g).tolist()]))
    for a, b in zip(cuts, cuts[1:]):
        cache.append(k[:, a:b], v[:, a:b])
    q = torch.randn(heads, d, generator=g, dtype=torch.float64)
    return cache, k, v, q


@given(heads=st.integers(1, 3), n=st.integers(1, 60), d=st.integers(1, 6), page=st.integers(1, 9),
       kept=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_selected_pages_attend_exactly(heads, n, d, page, kept, seed):
    cache, k, v, q = _filled(heads, n, d, page, seed)
    assert cache.length == n and cache.num_pages == -(-n // page)
    # the bound: every key's logit is at most its page's score
    logits = (k @ q[..., None]).squeeze(-1)  # (H, N)
    bounds = cache.page_scores(q)[:, torch.arange(n) // page]
    assert (logits <= bounds + 1e-12).all()
    out, lse, pages = cache.attend(q, kept)
    assert pages.shape[1] == min(kept, cache.num_pages - 1) + 1 and (pages[:, -1] == cache.num_pages - 1).all()
    # exact attention over the tokens of the chosen pages (per-head mask)
    mask = torch.zeros(heads, 1, n, dtype=torch.bool)
    for h in range(heads):
        mask[h, 0, (torch.arange(n) // page)[:, None].eq(pages[h]).any(-1)] = True
    ref_out, ref_lse = reference_attention(q[None, :, None], k[None], v[None], mask=mask[None])
    torch.testing.assert_close(out, ref_out[0, :, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(lse, ref_lse[0, :, 0], atol=1e-10, rtol=0)


@given(n=st.integers(1, 50), page=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_all_pages_is_dense(n, page, seed):
    cache, k, v, q = _filled(2, n, 4, page, seed)
    out, lse, _ = cache.attend(q, cache.num_pages)
    ref_out, ref_lse = reference_attention(q[None, :, None], k[None], v[None])
    torch.testing.assert_close(out, ref_out[0, :, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(lse, ref_lse[0, :, 0], atol=1e-10, rtol=0)
    torch.testing.assert_close(cache.dense_attend(q)[0], ref_out[0, :, 0], atol=1e-10, rtol=0)


def test_page_table_maps_logical_to_physical():
    cache = PagedKVCache(1, 2, 4, 16)
    cache.free = [3, 0, 2, 1]  # any physical order: the table hides it
    k = torch.arange(20.0).view(1, 10, 2)
    cache.append(k, k)
    assert cache.page_table == [3, 0, 2]
    keys, _ = cache.gather(torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(keys, k)


def test_recall_grows_with_pages_kept():
    # keys with locality (a random walk): the pages with the best bound hold the best keys
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 2048, 16, generator=g).cumsum(1) * 0.1
    cache = PagedKVCache(2, 16, 32, 2048)
    cache.append(k, k)
    q = torch.randn(2, 16, generator=g)
    recalls = [topk_recall(q, k, cache.select_pages(q, kept), 32) for kept in (1, 4, 16, 64)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
    assert cache.bytes_read(4) < cache.bytes_read(None) / 4


def test_bad_input():
    with pytest.raises(ValueError, match="page_size=5 does not divide the cache capacity=12"):
        PagedKVCache(1, 2, 5, 12)
    cache = PagedKVCache(1, 2, 4, 8)
    cache.append(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="pages_kept must be a positive int"):
        cache.attend(torch.zeros(1, 2), 0)
    with pytest.raises(ValueError, match="cache full"):
        cache.append(torch.zeros(1, 6, 2), torch.zeros(1, 6, 2))
