"""reference_attention: the dense truth. Checked against an independent per-query loop."""
from __future__ import annotations

import math

import pytest
import torch

from longlab.attention import causal_mask, reference_attention


def _loop_attention(q, k, v, keep, mult, scale):
    """Independent O(N^2) loop: weights m_ij exp(s_ij) / sum m exp(s); empty rows -> 0, -inf."""
    B, H, Nq, _ = q.shape
    out = torch.zeros(B, H, Nq, v.shape[-1], dtype=q.dtype)
    lse = torch.full((B, H, Nq), -math.inf, dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(Nq):
                cols = [j for j in range(k.shape[2]) if keep[h, i, j] and mult[h, i, j] > 0]
                if not cols:
                    continue
                s = torch.stack([(q[b, h, i] @ k[b, h, j]) * scale + math.log(mult[h, i, j]) for j in cols])
                w = torch.softmax(s, 0)
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, cols))
                lse[b, h, i] = torch.logsumexp(s, 0)
    return out, lse


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("nq,nk", [(5, 5), (3, 7), (7, 3)])
def test_matches_loop_with_multiplicity_and_mask(causal, nq, nk):
    g = torch.Generator().manual_seed(nq * 10 + nk)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g, dtype=torch.float64) for n in (nq, nk, nk))
    mult = torch.randint(0, 3, (3, nq, nk), generator=g)
    mask = torch.rand(nq, nk, generator=g) > 0.2
    out, lse = reference_attention(q, k, v, mask=mask, causal=causal, multiplicity=mult)
    keep = mask[None].expand(3, nq, nk) & (causal_mask(nq, nk) if causal else True)
    ref_out, ref_lse = _loop_attention(q, k, v, keep, mult, 4**-0.5)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-12, rtol=0)


def test_matches_sdpa_dense():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        out, _ = reference_attention(q, k, v, causal=causal)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_causal_is_bottom_right_aligned():
    mask = causal_mask(2, 4)
    assert mask.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 2).tolist() == [[False, False], [True, False], [True, True]]


def test_fully_masked_rows_are_zero_with_finite_gradients():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[1] = False
    out, lse = reference_attention(q, k, v, mask=mask)
    assert torch.all(out[:, :, 1] == 0) and torch.all(torch.isneginf(lse[:, :, 1]))
    assert torch.isfinite(lse[:, :, [0, 2, 3]]).all()
    (out.sum() + lse[:, :, [0, 2, 3]].sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.all(q.grad[:, :, 1] == 0)


def test_gradcheck_with_multiplicity():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mult = torch.randint(1, 3, (2, 4, 4), generator=g)
    assert torch.autograd.gradcheck(
        lambda q, k, v: reference_attention(q, k, v, multiplicity=mult, causal=True), (q, k, v)
    )


def test_grouped_query_heads_match_repeated_kv():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 4, 5, 3, generator=g, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    out, lse = reference_attention(q, k, v)
    out2, lse2 = reference_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))
    torch.testing.assert_close(out, out2, atol=1e-14, rtol=0)
    torch.testing.assert_close(lse, lse2, atol=1e-14, rtol=0)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"multiplicity": torch.ones(2, 2, 3)}, ValueError, "multiplicity must have shape"),
        ({"multiplicity": -torch.ones(1, 3, 3)}, ValueError, "non-negative"),
        ({"mask": torch.ones(3, 3)}, TypeError, "bool"),
        ({"scale": -1.0}, ValueError, "positive"),
    ],
)
def test_bad_options(kwargs, error, match):
    q = torch.randn(1, 1, 3, 2)
    with pytest.raises(error, match=match):
        reference_attention(q, q, q, **kwargs)
