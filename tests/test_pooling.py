"""Token pooling vs the dense reference over an explicit key set [exact keys, pooled blocks]."""
from __future__ import annotations

import pytest
import torch
from checks import assert_attention_matches
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention import reference_attention
from longlab.attention.pooling import pool_blocks, pooled_attention, pooled_key_set


def _inputs(b, h, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]


def _reference(q, k, v, block, window):
    keys = torch.cat([k, pool_blocks(k, block)], dim=2)
    values = torch.cat([v, pool_blocks(v, block)], dim=2)
    return reference_attention(q, keys, values, mask=pooled_key_set(q.shape[2], block, window))


@given(b=st.integers(1, 2), h=st.integers(1, 3), n=st.integers(1, 60), d=st.integers(1, 6),
       data=st.data(), seed=st.integers(0, 2**16))
def test_matches_reference(b, h, n, d, data, seed):
    block, window = data.draw(st.integers(1, n)), data.draw(st.integers(1, n + 3))
    inputs = _inputs(b, h, n, d, seed)
    assert_attention_matches(pooled_attention(*inputs, block, window), _reference(*inputs, block, window),
                             inputs, 1e-10)


@pytest.mark.parametrize("window", [1, 4, 100])
def test_block_one_is_dense(window):
    inputs = _inputs(2, 2, 33, 4, 0)
    assert_attention_matches(pooled_attention(*inputs, 1, window), reference_attention(*inputs, causal=True),
                             inputs, 1e-10)


@given(n=st.integers(1, 80), data=st.data())
def test_no_block_ends_after_its_query(n, data):
    block, window = data.draw(st.integers(1, n)), data.draw(st.integers(1, n))
    seen = pooled_key_set(n, block, window)
    ends = (torch.arange(n // block) + 1) * block - 1
    rows = torch.arange(n)[:, None]
    assert not (seen[:, n:] & (ends[None, :] > rows)).any()
    assert not (seen[:, :n] & (torch.arange(n)[None, :] > rows)).any()  # exact keys are causal too
    # every exact key is either seen exactly or inside a seen pooled block, or in a block straddling the window
    covered = seen[:, :n].clone()
    for b in range(n // block):
        covered[:, b * block:(b + 1) * block] |= seen[:, n + b:n + b + 1]
    straddle = (torch.arange(n)[None, :] <= rows - window) & ~covered
    assert (straddle.sum(1) < block).all()


def test_changing_a_future_token_changes_nothing_before_it():
    q, k, v = (t.detach() for t in _inputs(1, 2, 40, 4, 3))
    out, _ = pooled_attention(q, k, v, 4, 3)
    k2 = k.clone()
    k2[..., 25, :] += 1.0
    out2, _ = pooled_attention(q, k2, v, 4, 3)
    torch.testing.assert_close(out[..., :25, :], out2[..., :25, :], atol=0, rtol=0)
    assert (out[..., 25:, :] - out2[..., 25:, :]).abs().max() > 1e-6


def test_bad_input():
    q = torch.randn(1, 1, 8, 2)
    with pytest.raises(ValueError, match="block=9 is larger than the sequence N=8"):
        pooled_attention(q, q, q, 9, 2)
    with pytest.raises(ValueError, match="window"):
        pooled_attention(q, q, q, 2, 0)
