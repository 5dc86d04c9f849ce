"""dilated_attention vs the dense float64 reference with the pattern's multiplicity mask (forward)."""
from __future__ import annotations

import pytest
import torch
from conftest import devices
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dilated_branches

from longlab import dilated_attention, reference_attention
from longlab.attention.patterns import Dilated


@st.composite
def configs(draw, max_n=70):
    lengths, rates, heads, offsets = draw(dilated_branches())
    return dict(
        shape=(draw(st.integers(1, 2)), heads, draw(st.integers(1, max_n)), draw(st.integers(1, 8))),
        segment_lengths=lengths, dilation_rates=rates, offsets=offsets,
        causal=draw(st.booleans()), dedupe=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)),
    )


def run_both(cfg, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(cfg["seed"])
    q, k, v = (torch.randn(*cfg["shape"], generator=gen, dtype=torch.float64) for _ in range(3))
    heads, n = cfg["shape"][1], cfg["shape"][2]
    pattern = Dilated(cfg["segment_lengths"], cfg["dilation_rates"], cfg["causal"], cfg["offsets"])
    mult = pattern.multiplicity(heads, n)
    if cfg["dedupe"]:
        mult = (mult > 0).long()
    ref = reference_attention(q, k, v, causal=cfg["causal"], multiplicity=mult)
    out = dilated_attention(
        *(t.to(device=device, dtype=dtype) for t in (q, k, v)), cfg["segment_lengths"], cfg["dilation_rates"],
        causal=cfg["causal"], offsets=cfg["offsets"], dedupe=cfg["dedupe"], return_lse=True,
    )
    return ref, tuple(t.cpu().double() for t in out)


def assert_close_lse(lse, ref_lse, tol):
    finite = torch.isfinite(ref_lse)
    assert torch.equal(finite, torch.isfinite(lse)), "rows without keys must give lse = -inf, others finite"
    assert (lse[~finite] == float("-inf")).all()
    torch.testing.assert_close(lse[finite], ref_lse[finite], atol=tol, rtol=tol)


@pytest.mark.parametrize("device", devices())
@given(cfg=configs())
def test_matches_reference_float64(device, cfg):
    (ref_out, ref_lse), (out, lse) = run_both(cfg, device=device)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    assert_close_lse(lse, ref_lse, 1e-10)


@pytest.mark.parametrize("device", devices())  # on CUDA float32 runs the efficient kernel, float64 the math path
@settings(max_examples=15)
@given(cfg=configs())
def test_matches_reference_float32(device, cfg):
    (ref_out, ref_lse), (out, lse) = run_both(cfg, dtype=torch.float32, device=device)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    assert_close_lse(lse, ref_lse, 1e-5)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dedupe", [False, True])
def test_fixed_configs_on_device(device, causal, dedupe):
    cfg = dict(shape=(2, 5, 45, 8), segment_lengths=[8, 16, 32], dilation_rates=[1, 2, 4], offsets="reference",
               causal=causal, dedupe=dedupe, seed=7)
    dtype = torch.float64 if device == "cpu" else torch.float32
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    (ref_out, ref_lse), (out, lse) = run_both(cfg, dtype=dtype, device=device)
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=tol)
    assert_close_lse(lse, ref_lse, tol)


def test_branches_count_keys_once_per_branch_unless_dedupe():
    # Two identical dense branches: each key is seen twice, which leaves the softmax weights unchanged but
    # adds log 2 to lse; dedupe=True counts each key once and gives plain attention's lse.
    q, k, v = (torch.randn(1, 2, 12, 4, dtype=torch.float64) for _ in range(3))
    plain_out, plain_lse = reference_attention(q, k, v)
    out, lse = dilated_attention(q, k, v, [16, 16], [1, 1], return_lse=True)
    torch.testing.assert_close(out, plain_out)
    torch.testing.assert_close(lse, plain_lse + torch.log(torch.tensor(2.0, dtype=torch.float64)))
    out_d, lse_d = dilated_attention(q, k, v, [16, 16], [1, 1], dedupe=True, return_lse=True)
    torch.testing.assert_close(lse_d, plain_lse)


@pytest.mark.parametrize("causal", [False, True])
def test_partial_segment_never_attends_padding(causal):
    # N = 10, w = 8: the last segment holds only rows 8 and 9. Their lse must be the logsumexp over those real
    # keys; LongNet's reference code pads the segment with zero keys (each adds exp(0) = 1 to the normaliser).
    q, k, v = (torch.randn(1, 1, 10, 4, dtype=torch.float64) for _ in range(3))
    out, lse = dilated_attention(q, k, v, [8], [1], causal=causal, return_lse=True)
    tail_out, tail_lse = reference_attention(q[:, :, 8:], k[:, :, 8:], v[:, :, 8:], causal=causal)
    torch.testing.assert_close(out[:, :, 8:], tail_out)
    torch.testing.assert_close(lse[:, :, 8:], tail_lse)


def test_uncovered_rows_give_zero_and_minus_inf_without_nan():
    # N = 2 < r = 4 with explicit offset 3: head 0 keeps no row at all; head 1 (offset 0) keeps row 0.
    q, k, v = (torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out, lse = dilated_attention(q, k, v, [4], [4], offsets=[[3, 0]], return_lse=True)
    assert (out[0, 0] == 0).all() and (lse[0, 0] == float("-inf")).all()
    assert (out[0, 1, 1] == 0).all() and lse[0, 1, 1] == float("-inf") and torch.isfinite(lse[0, 1, 0])
    (out.sum() + torch.where(torch.isfinite(lse), lse, 0).sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, 0] == 0).all()


def test_grouped_query_heads_match_expanded():
    q = torch.randn(1, 4, 20, 4, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 20, 4, dtype=torch.float64) for _ in range(2))
    out = dilated_attention(q, k, v, [8, 16], [1, 2], offsets="paper")
    expanded = dilated_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), [8, 16], [1, 2],
                                 offsets="paper")
    torch.testing.assert_close(out, expanded)


def test_scale_is_used():
    q, k, v = (torch.randn(1, 2, 16, 4, dtype=torch.float64) for _ in range(3))
    mult = Dilated([8, 16], [1, 2]).multiplicity(2, 16)
    ref, _ = reference_attention(q, k, v, scale=0.3, multiplicity=mult)
    torch.testing.assert_close(dilated_attention(q, k, v, [8, 16], [1, 2], scale=0.3), ref)


def test_offset_modes_differ_as_documented():
    pattern_ref = Dilated([8], [4], offsets="reference")
    pattern_paper = Dilated([8], [4], offsets="paper")
    assert pattern_ref.head_offsets(0, 6) == [0, 0, 1, 1, 2, 2]  # h // ceil(6 / 4)
    assert pattern_paper.head_offsets(0, 6) == [0, 1, 2, 3, 0, 1]  # h mod 4


def _inputs(n=16, heads=2):
    return [torch.randn(1, heads, n, 4) for _ in range(3)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(segment_lengths=[8, 16], dilation_rates=[1]), "same non-zero length"),
        (dict(segment_lengths=[], dilation_rates=[]), "same non-zero length"),
        (dict(segment_lengths=[0], dilation_rates=[1]), "segment_lengths\\[0\\]"),
        (dict(segment_lengths=[8], dilation_rates=[-2]), "dilation_rates\\[0\\]"),
        (dict(segment_lengths=[10], dilation_rates=[4]), "not divisible"),
        (dict(segment_lengths=[8], dilation_rates=[2], offsets="diagonal"), "offsets"),
        (dict(segment_lengths=[8], dilation_rates=[2], offsets=[[0]]), "offsets\\[0\\] has 1 entries"),
        (dict(segment_lengths=[8], dilation_rates=[2], offsets=[[0, 2]]), "offsets\\[0\\]\\[1\\]=2"),
        (dict(segment_lengths=[8], dilation_rates=[2], offsets=[[0, 1], [0, 1]]), "one list per branch"),
    ],
)
def test_bad_pattern_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dilated_attention(*_inputs(), **kwargs)


def test_bad_tensor_arguments_raise():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="same sequence length"):
        dilated_attention(q, k[:, :, :8], v[:, :, :8], [8], [1])
    with pytest.raises(TypeError, match="dtypes differ"):
        dilated_attention(q, k.double(), v, [8], [1])
    with pytest.raises(ValueError, match="4 dims"):
        dilated_attention(q[0], k[0], v[0], [8], [1])
    with pytest.raises(ValueError, match="different devices"):
        dilated_attention(q, k.to("meta"), v, [8], [1])
    with pytest.raises(TypeError, match="segment_lengths must be a list"):
        dilated_attention(q, k, v, "8", [1])
    with pytest.raises(TypeError, match="causal must be True or False"):
        dilated_attention(q, k, v, [8], [1], causal="yes")
