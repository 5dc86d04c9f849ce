"""ReRoPE / leaky ReRoPE: the two-partial lse form equals the dense position-modified logits; limits reduce to RoPE."""
from __future__ import annotations

import math

import pytest
import torch
from checks import assert_attention_matches
from hypothesis import example, given
from hypothesis import strategies as st

from longlab.attention import attend
from longlab.attention.rerope import rerope_attention, rerope_reference, rerope_relative
from longlab.attention.rope import apply_rope, rope_tables


def _inputs(b, h, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(3 * torch.randn(b, h, n, d, generator=g, dtype=dtype)).requires_grad_() for _ in range(3)]


def _rope_attention(q, k, v):
    cos, sin = rope_tables(torch.arange(q.shape[2]), q.shape[-1], dtype=q.dtype)
    return attend(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, causal=True)


@given(b=st.integers(1, 2), h=st.integers(1, 2), n=st.integers(1, 40), half=st.integers(1, 4),
       window=st.integers(1, 45), leak=st.sampled_from([None, 1, 2.0, 3.5, 16.0]), seed=st.integers(0, 2**16))
@example(b=1, h=1, n=3, half=1, window=1, leak=3.5, seed=0)  # fractional positions must stay float64
def test_matches_dense_reference(b, h, n, half, window, leak, seed):
    inputs = _inputs(b, h, n, 2 * half, seed)
    assert_attention_matches(rerope_attention(*inputs, window, leak), rerope_reference(*inputs, window, leak),
                             inputs, 1e-10)


@pytest.mark.parametrize("window, leak", [(50, None), (50, 4.0), (3, 1), (1, 1.0)])
def test_reduces_to_rope(window, leak):
    # w >= N (no far keys) or s = 1 (far keys keep their true distance) is plain RoPE
    inputs = _inputs(2, 2, 37, 8, 0)
    assert_attention_matches(rerope_attention(*inputs, window, leak), _rope_attention(*inputs), inputs, 1e-10)


def test_rerope_differs_from_rope_past_the_window():
    inputs = [t.detach() for t in _inputs(1, 2, 40, 8, 1)]
    out, _ = rerope_attention(*inputs, 8)
    rope_out, _ = _rope_attention(*inputs)
    torch.testing.assert_close(out[..., :8, :], rope_out[..., :8, :], atol=1e-10, rtol=0)  # rows < w: same keys
    assert (out[..., 9:, :] - rope_out[..., 9:, :]).abs().max() > 1e-3


def test_relative_positions():
    d = torch.arange(10)
    assert rerope_relative(d, 4).tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4]
    assert rerope_relative(d, 4, 2).tolist() == [0, 1, 2, 3, 4, 4.5, 5, 5.5, 6, 6.5]
    assert rerope_relative(d, 4, 1).tolist() == d.tolist()
    assert rerope_relative(d, 4, math.inf).tolist() == rerope_relative(d, 4).tolist()


def test_float32_long():
    q, k, v = _inputs(1, 2, 300, 16, 2, dtype=torch.float32)
    out, lse = rerope_attention(q, k, v, 64, 8.0)
    ref_out, ref_lse = rerope_reference(q.double(), k.double(), v.double(), 64, 8.0)
    torch.testing.assert_close(out.double(), ref_out, atol=2e-5, rtol=0)
    torch.testing.assert_close(lse.double(), ref_lse, atol=2e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [({"window": 0}, "window"), ({"window": 4, "leak": 0.5}, "leak"),
                                           ({"window": 4, "positions": torch.tensor([0, 2, 3, 4])}, "positions")])
def test_bad_input(kwargs, match):
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match=match):
        rerope_attention(q, q, q, **kwargs)
