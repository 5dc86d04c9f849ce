"""Linear attention: chunked, recurrent and dense-reference forms agree (forward and gradients)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention.linear import LinearAttentionState, linear_attention, linear_attention_reference


def _inputs(b, h, n, d, dv, seed, dtype=torch.float64, nk=None):
    g = torch.Generator().manual_seed(seed)
    nk = nk or n
    shapes = ((b, h, n, d), (b, h, nk, d), (b, h, nk, dv))
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def _assert_same(got, want, inputs, atol):
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(3), dtype=got.dtype)
    for a, b in zip(torch.autograd.grad((got * w).sum(), inputs), torch.autograd.grad((want * w).sum(), inputs)):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


@given(b=st.integers(1, 2), h=st.integers(1, 3), n=st.integers(1, 50), d=st.integers(1, 8), dv=st.integers(1, 8),
       chunk=st.integers(1, 20), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_chunked_matches_dense_reference(b, h, n, d, dv, chunk, causal, seed):
    inputs = _inputs(b, h, n, d, dv, seed)
    _assert_same(linear_attention(*inputs, causal=causal, chunk_size=chunk),
                 linear_attention_reference(*inputs, causal=causal), inputs, 1e-10)


@given(n=st.integers(1, 40), nk=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_non_causal_cross_lengths(n, nk, seed):
    inputs = _inputs(1, 2, n, 4, 3, seed, nk=nk)
    _assert_same(linear_attention(*inputs), linear_attention_reference(*inputs), inputs, 1e-10)


@given(n=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_recurrent_decode_equals_chunked(n, seed):
    q, k, v = _inputs(2, 3, n, 5, 4, seed)
    state = LinearAttentionState()
    steps = torch.cat([state.step(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]) for t in range(n)], -2)
    _assert_same(steps, linear_attention(q, k, v, causal=True, chunk_size=7), (q, k, v), 1e-10)
    assert state.tokens == n and state.state_numel() == 2 * 3 * (5 * 4 + 5)  # constant in n


def test_float32_matches_float64():
    q, k, v = _inputs(2, 4, 300, 32, 32, 0, dtype=torch.float32)
    want = linear_attention_reference(*(t.detach().double() for t in (q, k, v)), causal=True)
    torch.testing.assert_close(linear_attention(q, k, v, causal=True).double(), want, atol=1e-5, rtol=0)


def test_weights_differ_from_softmax():
    # The kernel changes the function: linear attention is not softmax attention (a test that could fail).
    from longlab.attention import reference_attention
    q, k, v = (t.detach() for t in _inputs(1, 1, 16, 4, 4, 1))
    assert (linear_attention(q, k, v, causal=True) - reference_attention(q, k, v, causal=True)[0]).abs().max() > 1e-3


def test_bad_input():
    q, k, v = (t.detach() for t in _inputs(1, 1, 4, 2, 2, 0))
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention(q, k, v, causal=True, chunk_size=0)
    with pytest.raises(ValueError, match="causal"):
        linear_attention(q, k[..., :3, :], v[..., :3, :], causal=True)
    with pytest.raises(ValueError, match="one token"):
        LinearAttentionState().step(q, k, v)
