"""The step-by-step dilated attention (gather, attend, scatter, merge) equals the kernel and the dense reference."""
from __future__ import annotations

import pytest
import torch

import longlab
from longlab.analysis.dilated_walkthrough import dilated_steps
from longlab.attention.patterns import Dilated


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("offsets", ["reference", "paper"])
def test_steps_equal_kernel_and_reference(causal, offsets):
    torch.manual_seed(1)
    n, heads = 12, 4  # 12 is not a multiple of 8: a partial last segment
    pattern = Dilated((4, 8), (1, 2), causal=causal, offsets=offsets)
    q, k, v = (torch.randn(1, heads, n, 3, dtype=torch.float64) for _ in range(3))
    out, lse = longlab.dilated_attention(q, k, v, [4, 8], [1, 2], causal=causal, offsets=offsets, return_lse=True)
    ref, ref_lse = longlab.reference_attention(q, k, v, causal=causal, multiplicity=pattern.multiplicity(heads, n))
    for head in range(heads):
        steps = dilated_steps(q, k, v, pattern, head)
        assert torch.allclose(steps.out, out[0, head], atol=1e-12)
        assert torch.allclose(steps.out, ref[0, head], atol=1e-12)
        assert torch.equal(torch.isfinite(steps.lse), torch.isfinite(ref_lse[0, head]))
        finite = torch.isfinite(steps.lse)
        assert torch.allclose(steps.lse[finite], lse[0, head][finite], atol=1e-12)
        covered = steps.weights.sum(0)
        assert torch.allclose(covered[finite], torch.ones_like(covered[finite]))  # beta_i sum to 1 per row
        kept = sorted(p for br in steps.branches for seg in br.segments for p in seg)
        for br, b in zip(steps.branches, range(2)):
            rows = sorted(p for seg in br.segments for p in seg)
            assert rows == pattern.kept_rows(b, head, heads, n).tolist()
        assert kept


def test_bad_input():
    pattern = Dilated((4,), (1,))
    q = torch.randn(2, 1, 4, 2)
    with pytest.raises(ValueError, match="one batch"):
        dilated_steps(q, q, q, pattern)
    with pytest.raises(TypeError, match="Dilated"):
        dilated_steps(q[:1], q[:1], q[:1], object())
    with pytest.raises(ValueError, match="head"):
        dilated_steps(q[:1], q[:1], q[:1], pattern, head=3)
