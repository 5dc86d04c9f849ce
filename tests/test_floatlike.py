"""Float-like pattern: definition vs closed form (mask_mod, counts), gathered kernel vs reference, costs."""
from __future__ import annotations

import math

import pytest
import torch
from checks import assert_attention_matches
from hypothesis import given
from hypothesis import strategies as st

from longlab.attention import reference_attention
from longlab.attention.floatlike import FloatLike, floatlike_attention, grid_distances


def test_grid_from_the_definition():
    assert grid_distances(0, 20).tolist() == [0, 1, 2, 4, 8, 16]  # m = 0: one key per octave
    assert grid_distances(1, 20).tolist() == [0, 1, 2, 3, 4, 6, 8, 12, 16]
    assert grid_distances(2, 40).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32]


@given(m=st.integers(0, 4), n=st.integers(1, 70), causal=st.booleans())
def test_mask_mod_and_counts_match_the_definition(m, n, causal):
    pattern = FloatLike(m, causal)
    mask = pattern.branch_masks(1, n)[0, 0]
    i = torch.arange(n)
    mod = pattern.mask_mod(1, n)
    assert torch.equal(mod(0, 0, i[:, None], i[None, :]), mask)
    assert all(bool(mod(0, 0, a, b)) == bool(mask[a, b]) for a in range(0, n, 7) for b in range(0, n, 5))  # ints
    assert torch.equal(pattern.keys_per_query(n), mask.sum(1))
    assert pattern.pairs(3, n) == 3 * int(mask.sum())
    assert pattern.flops(n, 8, 2) == 4.0 * 8 * 2 * int(mask.sum())


@given(b=st.integers(1, 2), h=st.integers(1, 3), n=st.integers(1, 50), d=st.integers(1, 6), m=st.integers(0, 3),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_gathered_kernel_matches_reference(b, h, n, d, m, causal, seed):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, h, n, d, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3)]
    mask = FloatLike(m, causal).multiplicity(h, n) > 0
    assert_attention_matches(floatlike_attention(*inputs, m, causal), reference_attention(*inputs, mask=mask),
                             inputs, 1e-10)


def test_cost_is_n_2m_log_n():
    # per query about 2^m (log2 N - m + 1) keys: pairs / (N 2^m log2 N) stays bounded as N grows 64x
    for m in (1, 3):
        ratios = [FloatLike(m, causal=True).pairs(1, n) / (n * 2**m * math.log2(n)) for n in (1024, 65536)]
        assert 0.5 < ratios[0] < 1.2 and 0.5 < ratios[1] < 1.2
    assert FloatLike(2, True).pairs(1, 65536) < 0.001 * 65536**2


def test_bad_mantissa_bits():
    with pytest.raises(ValueError, match="mantissa_bits must be an int >= 0, got -1"):
        FloatLike(-1)
    with pytest.raises(ValueError, match="mantissa_bits"):
        floatlike_attention(*(torch.randn(1, 1, 4, 2) for _ in range(3)), -1)


@pytest.mark.parametrize("causal", [False, True])
def test_flex_block_mask_from_the_closed_form(causal):
    from torch.nn.attention.flex_attention import create_block_mask

    pattern = FloatLike(1, causal)
    blocks = create_block_mask(pattern.mask_mod(1, 256), 1, 1, 256, 256, device="cpu", BLOCK_SIZE=32)
    assert torch.equal(blocks.to_dense()[0, 0].bool(), pattern.block_occupancy(1, 256, 32)[0])
