"""Dilated decoding: token by token with the pruned cache equals the full causal forward; cache stays bounded."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dilated_branches

from longlab import dilated_attention
from longlab.attention.dilated_decode import DilatedDecodeCache, cache_size_curve, needed_keys
from longlab.attention.patterns import Dilated


@settings(max_examples=20)
@given(cfg=dilated_branches(max_branches=3, max_multiple=5, max_heads=4), n=st.integers(1, 45),
       d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_decoding_equals_full_forward(cfg, n, d, seed):
    lengths, rates, heads, offsets = cfg
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, heads, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    full_out, full_lse = dilated_attention(q, k, v, lengths, rates, causal=True, offsets=offsets, return_lse=True)
    cache = DilatedDecodeCache(lengths, rates, heads, offsets)
    steps = [cache.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]) for t in range(n)]
    out, lse = torch.cat([o for o, _ in steps], 2), torch.cat([lse for _, lse in steps], 2)
    torch.testing.assert_close(out, full_out, atol=1e-10, rtol=0)
    assert torch.equal(torch.isinf(lse), torch.isinf(full_lse))
    torch.testing.assert_close(lse[torch.isfinite(lse)], full_lse[torch.isfinite(full_lse)], atol=1e-10, rtol=0)
    assert cache.entries() <= heads * cache.max_entries_per_head()


@given(cfg=dilated_branches(max_branches=3, max_multiple=5, max_heads=4), n=st.integers(1, 40))
def test_needed_keys_are_the_patterns_keys(cfg, n):
    lengths, rates, heads, offsets = cfg
    pattern = Dilated(lengths, rates, causal=True, offsets=offsets)
    for t in range(0, n, 3):
        for h in range(heads):
            want = pattern.keys_for(t, h, heads, n)
            got = needed_keys(pattern, t, h, heads)
            assert all(torch.equal(got[b], want[b]) for b in want)


def test_cache_holds_only_needed_keys_and_is_bounded():
    lengths, rates, heads = (8, 16, 32), (1, 2, 4), 4
    cache = DilatedDecodeCache(lengths, rates, heads)
    x = torch.randn(1, heads, 200, 4)
    sizes = []
    for t in range(200):
        cache.step(x[..., t:t + 1, :], x[..., t:t + 1, :], x[..., t:t + 1, :])
        sizes.append(cache.entries() / heads)
        # every cached key is needed by some later token of its branch's segment (or is the token itself)
        for h in range(heads):
            for b, held in enumerate(cache.cached_positions(h)):
                assert all(p // lengths[b] == t // lengths[b] for p in held)
    assert max(sizes) <= 8 + 8 + 8 and max(sizes) >= 16  # sum w/r = 24 per head, not 200
    curve = cache_size_curve(lengths, rates, heads, 200)
    assert curve.max() <= 24 and curve[-1] == int(sizes[-1])


def test_bad_input():
    with pytest.raises(ValueError, match="one token"):
        DilatedDecodeCache((4,), (1,), 2).step(*(torch.zeros(1, 2, 3, 2) for _ in range(3)))
