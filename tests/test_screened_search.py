"""The bfloat16-screened exact search: its error bound holds, it returns the float32 top-k, and queries whose
keys bunch closer than the bound are searched again rather than answered wrongly."""
from __future__ import annotations

import pytest
import torch

from longlab.memory import KVMemory, exact_topk, screened_search, store
from longlab.memory.screened_search import screen_error_bound, screened_topk


def float64_topk(q, keys, k):
    return (q.double() @ keys.double().transpose(-1, -2)).topk(k, dim=-1)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_screened_scores_stay_within_the_error_bound(scale):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 64, 64, generator=gen) * scale
    keys = torch.randn(2, 4096, 64, generator=gen) * torch.rand(2, 4096, 1, generator=gen) * scale
    screened = torch.bmm(q.bfloat16(), keys.bfloat16().transpose(1, 2)).double()
    exact = q.double() @ keys.double().transpose(1, 2)
    error = (screened - exact).abs().amax(-1)
    bound = screen_error_bound(q, keys).double()
    torch.testing.assert_close(screen_error_bound(q, keys, torch.linalg.vector_norm(keys, dim=-1)).double(), bound)
    assert (error <= bound).all()
    assert (error >= bound / 50).all()  # the bound is of the size of the real error, not vacuous


@pytest.mark.parametrize("heads, n, k", [(1, 5000, 8), (2, 3001, 32), (3, 1200, 1)])
def test_screened_search_returns_the_exact_top_k(heads, n, k):
    gen = torch.Generator().manual_seed(n + k)
    q, keys = torch.randn(heads, 40, 16, generator=gen), torch.randn(heads, n, 16, generator=gen)
    stats = {}
    scores, idx = screened_topk(q, keys, k, chunk=64, group=4, stats=stats)  # 16 warm blocks = 1024 keys
    want_scores, want_idx = float64_topk(q, keys, k)
    assert torch.equal(idx, want_idx)
    torch.testing.assert_close(scores.double(), want_scores, rtol=1e-5, atol=1e-5)
    assert stats["redone"] < heads * 40 // 4  # random keys: the certificate holds for most queries


def test_bunched_keys_fail_the_certificate_and_are_searched_again_exactly():
    """Keys within rounding of each other: the bfloat16 screen cannot order them, so every query is redone in
    float32, and the answer is still the exact top-k."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 24, 16, generator=gen)
    keys = torch.randn(1, 1, 16, generator=gen) + 1e-4 * torch.randn(1, 3000, 16, generator=gen)
    stats = {}
    scores, idx = screened_topk(q, keys, 5, chunk=64, group=4, stats=stats)
    want_scores, want_idx = float64_topk(q, keys, 5)
    assert stats["redone"] == 24
    torch.testing.assert_close(scores.double(), want_scores, rtol=1e-6, atol=1e-6)
    exact_f32 = exact_topk(q, keys, 5, method="threshold", chunk=64, group=4)
    assert torch.equal(idx, exact_f32[1])


def test_screen_is_chosen_only_where_it_pays(monkeypatch):
    q, keys = torch.randn(1, 64, 8), torch.randn(1, 20000, 8)
    monkeypatch.setattr(screened_search, "fast_bf16_matmul", lambda: True)
    monkeypatch.setattr(screened_search, "MIN_KEYS", 20000)  # the real threshold is millions of keys
    assert not screened_search.screen_worthwhile(q, keys[:, :19999], 4, None, 64)
    assert screened_search.screen_worthwhile(q, keys, 4, None, 64)
    assert not screened_search.screen_worthwhile(q[:, :8], keys, 4, None, 64)  # decoding: a few queries
    assert not screened_search.screen_worthwhile(q, keys, 4, torch.ones(1, 20000), 64)  # a per-key scale
    assert not screened_search.screen_worthwhile(q.double(), keys.double(), 4, None, 64)
    assert not screened_search.screen_worthwhile(q, keys[:, :1024], 4, None, 64)  # within the warm blocks
    monkeypatch.setattr(screened_search, "fast_bf16_matmul", lambda: False)
    assert not screened_search.screen_worthwhile(q, keys, 4, None, 64)


def test_screen_refuses_what_its_bound_does_not_cover():
    q, keys = torch.randn(1, 4, 8), torch.randn(1, 100, 8)
    with pytest.raises(ValueError, match="float32"):
        screened_topk(q.double(), keys.double(), 3)


def test_memory_search_goes_through_the_screen_where_it_pays_and_stays_exact(monkeypatch):
    calls = []
    monkeypatch.setattr(screened_search, "fast_bf16_matmul", lambda: True)
    monkeypatch.setattr(screened_search, "MIN_KEYS", 2048)
    real = store.screened_topk
    monkeypatch.setattr(store, "screened_topk", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    gen = torch.Generator().manual_seed(5)
    keys = torch.randn(3000, 16, generator=gen)
    memory = KVMemory(4096, 16, 16, chunk=64).add(keys, keys)
    q = torch.randn(64, 16, generator=gen)
    found = memory.search(q, 8)
    assert calls == [1]
    assert torch.equal(found.indices, float64_topk(q[None], keys[None], 8)[1])
    memory.search(q, 8, normalize=True)  # a per-key scale: the float32 path
    assert calls == [1]
