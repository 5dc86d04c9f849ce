"""Pattern objects: masks from the definition, exact pair/FLOP counts, keys_for, mask_mod, block occupancy."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import dilated_branches

from longlab.attention.floatlike import FloatLike
from longlab.attention.patterns import Dense, Dilated, SlidingWindow, head_offsets


def brute_dilated(lengths, rates, heads, n, causal, offsets):
    """Multiplicity straight from LongNet's description, with Python loops (independent of patterns.py)."""
    mult = torch.zeros(heads, n, n, dtype=torch.long)
    for b, (w, r) in enumerate(zip(lengths, rates)):
        w = min(w, n)
        for h in range(heads):
            if offsets == "reference":
                off = h // math.ceil(heads / r)
            elif offsets == "paper":
                off = h % r
            else:
                off = offsets[b][h]
            for i in range(n):
                for j in range(n):
                    same = i // w == j // w
                    kept = (i % w) % r == off and (j % w) % r == off
                    if same and kept and (j <= i or not causal):
                        mult[h, i, j] += 1
    return mult


@st.composite
def dilated_cases(draw):
    lengths, rates, heads, offsets = draw(dilated_branches(max_branches=3, max_multiple=5, max_heads=5))
    return lengths, rates, heads, draw(st.integers(1, 30)), draw(st.booleans()), offsets


@given(dilated_cases())
def test_dilated_multiplicity_matches_definition(case):
    lengths, rates, heads, n, causal, offsets = case
    pattern = Dilated(lengths, rates, causal, offsets)
    mult = pattern.multiplicity(heads, n)
    assert torch.equal(mult, brute_dilated(lengths, rates, heads, n, causal, offsets))
    assert pattern.pairs(heads, n) == int(mult.sum())
    assert pattern.flops(n, 8, heads) == 4 * 8 * int(mult.sum())


@given(n=st.integers(1, 40), window=st.integers(1, 12), causal=st.booleans(), heads=st.integers(1, 3))
def test_window_and_dense_pairs_match_masks(n, window, causal, heads):
    for pattern in (SlidingWindow(window, causal), Dense(causal)):
        assert pattern.pairs(heads, n) == int(pattern.multiplicity(heads, n).sum())
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    expected = ((i - j).abs() < window) & ((j <= i) | (not causal))
    assert torch.equal(SlidingWindow(window, causal).multiplicity(1, n)[0] > 0, expected)


def test_flops_formula_matches_count_when_segments_divide():
    pattern = Dilated((2048, 4096, 8192), (1, 2, 4))
    for n in (8192, 16384, 65536):
        assert pattern.flops(n, 64, 8) == pytest.approx(pattern.flops_formula(n, 64, 8))
    assert Dense().flops(65536, 64, 8) / pattern.flops(65536, 64, 8) == pytest.approx(18.29, abs=0.01)
    assert Dense().flops(16384, 64, 8) / pattern.flops(16384, 64, 8) == pytest.approx(4.571, abs=0.01)


def test_keys_for_and_mask_mod_read_the_same_masks():
    pattern = Dilated((4, 8, 16), (1, 2, 4), offsets="paper")
    masks = pattern.branch_masks(4, 24)
    for head, query in ((0, 0), (1, 13), (3, 23)):
        keys = pattern.keys_for(query, head, 4, 24)
        for b in range(3):
            assert torch.equal(keys[b], masks[b, head, query].nonzero().flatten())
    mod = pattern.mask_mod(4, 24)
    union = masks.any(0)
    assert all(bool(mod(0, h, i, j)) == bool(union[h, i, j]) for h in range(4) for i in range(0, 24, 5)
               for j in range(24))


def _evaluate(mod, heads, n):
    """mod on broadcast index tensors (H, 1, 1), (1, N, 1), (1, 1, N) -> bool (H, N, N)."""
    h, q, kv = torch.arange(heads)[:, None, None], torch.arange(n)[None, :, None], torch.arange(n)[None, None, :]
    return torch.broadcast_to(mod(0, h, q, kv), (heads, n, n))


def _assert_mask_mods_match(pattern, heads, n):
    """Every closed-form branch_mask_mod equals the branch's dense mask; mask_mod is their union."""
    masks = pattern.branch_masks(heads, n)
    for b, mod in enumerate(pattern.branch_mask_mods(heads, n)):
        assert torch.equal(_evaluate(mod, heads, n), masks[b]), (pattern, b, heads, n)
    assert torch.equal(_evaluate(pattern.mask_mod(heads, n), heads, n), masks.any(0))


@pytest.mark.parametrize("pattern", [Dense(False), Dense(True), SlidingWindow(1), SlidingWindow(5, causal=True),
                                     SlidingWindow(40), Dilated((4, 8, 16), (1, 2, 4), True, "paper"),
                                     Dilated((6, 9), (3, 3), False, "reference"), FloatLike(1, causal=True),
                                     FloatLike(2)], ids=repr)
@pytest.mark.parametrize("heads, n", [(1, 1), (3, 7), (5, 24), (4, 37)])
def test_mask_mods_match_branch_masks(pattern, heads, n):
    _assert_mask_mods_match(pattern, heads, n)


@given(dilated_cases())
def test_dilated_mask_mod_matches_definition(case):
    lengths, rates, heads, n, causal, offsets = case
    _assert_mask_mods_match(Dilated(lengths, rates, causal, offsets), heads, n)


def test_mask_mod_takes_plain_ints_and_new_patterns_must_write_one():
    pattern = Dilated((4, 8), (1, 2), offsets=[[0, 0], [1, 0]])
    mod, union = pattern.mask_mod(2, 16), pattern.multiplicity(2, 16) > 0
    assert all(bool(mod(0, h, i, j)) == bool(union[h, i, j]) for h in range(2) for i in range(16) for j in range(16))

    class Unfinished(Dense):
        def branch_mask_mod(self, branch, heads, n):
            return super(Dense, self).branch_mask_mod(branch, heads, n)

    with pytest.raises(NotImplementedError, match="Unfinished has no closed-form branch_mask_mod"):
        Unfinished().mask_mod(1, 4)


def test_block_occupancy_and_flex_block_mask():
    pattern = Dilated((16, 32, 64), (1, 2, 4))
    occ = pattern.block_occupancy(4, 100, 16)
    union = pattern.multiplicity(4, 100) > 0
    for h, qi, ki in ((0, 0, 0), (2, 3, 1), (3, 6, 5), (1, 0, 6)):
        tile = union[h, qi * 16:(qi + 1) * 16, ki * 16:(ki + 1) * 16]
        assert bool(occ[h, qi, ki]) == bool(tile.any())
    assert pattern.block_density(4, 100, 16) == pytest.approx(float(occ.float().mean()))
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    assert flex is not None
    from longlab.attention.flex import block_mask as flex_block_mask

    block_mask = flex_block_mask(pattern, 4, 128, 32)
    assert torch.equal(block_mask.to_dense()[0].bool(), pattern.block_occupancy(4, 128, 32))


def test_geometric_schedule_and_offsets():
    pattern = Dilated.geometric(4, 2, 3, causal=True)
    assert pattern.segment_lengths == (4, 8, 16) and pattern.dilation_rates == (1, 2, 4) and pattern.causal
    assert head_offsets("reference", 5, 2) == [0, 0, 0, 1, 1]
    assert head_offsets("paper", 5, 2) == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="alpha"):
        Dilated.geometric(4, 0, 3)
    with pytest.raises(ValueError, match="query must be"):
        pattern.keys_for(20, 0, 1, 20)
