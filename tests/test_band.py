"""band_attention (exact causal sliding window with lse) vs the dense reference with the band mask."""
from __future__ import annotations

import pytest
import torch
from checks import assert_attention_matches
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention import reference_attention
from longlab.attention.band import band_attention


def _band(n, window):
    i = torch.arange(n)
    dist = i[:, None] - i[None, :]
    return (dist >= 0) & (dist < window)


@given(b=st.integers(1, 2), h=st.integers(1, 3), n=st.integers(1, 60), d=st.integers(1, 6),
       window=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_matches_reference(b, h, n, d, window, seed):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, h, n, d, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3)]
    assert_attention_matches(band_attention(*inputs, window), reference_attention(*inputs, mask=_band(n, window)),
                             inputs, 1e-10)


def test_float32():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 333, 16, generator=g) for _ in range(3))
    out, lse = band_attention(q, k, v, 50)
    ref_out, ref_lse = reference_attention(q.double(), k.double(), v.double(), mask=_band(333, 50))
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=0)


def test_window_must_be_positive():
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="window"):
        band_attention(q, q, q, 0)
