"""merge: attending to key pieces separately then merging by lse equals attending to all keys."""
from __future__ import annotations

import pytest
import torch
from checks import assert_attention_matches
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention import attend, merge, reference_attention


@given(n=st.integers(2, 30), pieces=st.integers(1, 4), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_split_keys_attend_merge_equals_full(n, pieces, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, n, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    cuts = sorted(torch.randperm(n - 1, generator=g)[: pieces - 1].add(1).tolist())
    bounds = [0, *cuts, n]
    partials = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        piece_mask = torch.zeros(n, n, dtype=torch.bool)
        piece_mask[:, lo:hi] = True  # causal is applied on absolute positions by the reference
        partials.append(reference_attention(q, k, v, mask=piece_mask, causal=causal))
    assert_attention_matches(merge(partials), reference_attention(q, k, v, causal=causal), (q, k, v), atol=1e-10)


def test_merge_of_attend_pieces_with_gradcheck():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(1, 2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def fn(q, k, v):
        return merge([attend(q, k[..., :2, :], v[..., :2, :]), attend(q, k[..., 2:, :], v[..., 2:, :])])

    assert torch.autograd.gradcheck(fn, (q, k, v))
    out, lse = fn(q, k, v)
    ref_out, ref_lse = reference_attention(q, k, v)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)


def test_repeated_keys_count_twice():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    out, lse = merge([attend(q, k, v), attend(q, k[..., :2, :], v[..., :2, :])])
    mult = torch.ones(1, 5, 5, dtype=torch.long)
    mult[..., :2] = 2
    ref_out, ref_lse = reference_attention(q, k, v, multiplicity=mult)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-12, rtol=0)


def test_neg_inf_pieces_are_stable_and_gradients_finite():
    out_a = torch.randn(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)
    lse_a = torch.tensor([[[0.5, float("-inf"), float("-inf")]]], dtype=torch.float64, requires_grad=True)
    out_b = torch.randn(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)
    lse_b = torch.tensor([[[float("-inf"), 1.0, float("-inf")]]], dtype=torch.float64, requires_grad=True)
    out, lse = merge([(out_a, lse_a), (out_b * 0 + out_b, lse_b)])
    torch.testing.assert_close(out[0, 0, 0], out_a[0, 0, 0])
    torch.testing.assert_close(out[0, 0, 1], out_b[0, 0, 1])
    assert torch.isneginf(lse[0, 0, 2]) and not torch.isnan(out).any()
    (out.sum() + lse[..., :2].sum()).backward()
    for t in (out_a, lse_a, out_b, lse_b):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize(
    "partials,error,match",
    [
        ([], ValueError, "at least one"),
        ([torch.zeros(2)], TypeError, "pair"),
        ([(torch.zeros(1, 3, 2), torch.zeros(1, 2))], ValueError, "lse of shape"),
        ([(torch.zeros(1, 3, 2), torch.zeros(1, 3)), (torch.zeros(1, 4, 2), torch.zeros(1, 4))],
         ValueError, "out shape"),
    ],
)
def test_bad_partials(partials, error, match):
    with pytest.raises(error, match=match):
        merge(partials)
