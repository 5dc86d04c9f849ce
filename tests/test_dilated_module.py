"""DilatedAttention nn.Module: drop-in for nn.MultiheadAttention self-attention (batch_first)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from longlab import DilatedAttention, dilated_attention


def test_single_dense_branch_equals_multihead_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True, dtype=torch.float64)
    ours = DilatedAttention(16, 4, [64], [1], dtype=torch.float64)  # w >= N, r = 1: plain dense attention
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    with torch.no_grad():
        for proj, w, b in ((ours.q_proj, w_q, b_q), (ours.k_proj, w_k, b_k), (ours.v_proj, w_v, b_v),
                           (ours.out_proj, mha.out_proj.weight, mha.out_proj.bias)):
            proj.weight.copy_(w), proj.bias.copy_(b)
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    expected, _ = mha(x, x, x, need_weights=False)
    got, weights = ours(x)
    assert weights is None
    torch.testing.assert_close(got, expected)


def test_forward_is_projections_around_dilated_attention():
    torch.manual_seed(1)
    layer = DilatedAttention(12, 3, [4, 8], [1, 2], causal=True, offsets="paper", dtype=torch.float64)
    x = torch.randn(2, 19, 12, dtype=torch.float64, requires_grad=True)
    out, _ = layer(x)

    def heads(t):
        return t.view(2, 19, 3, 4).transpose(1, 2)

    core = dilated_attention(heads(layer.q_proj(x)), heads(layer.k_proj(x)), heads(layer.v_proj(x)), [4, 8], [1, 2],
                             causal=True, offsets="paper")
    torch.testing.assert_close(out, layer.out_proj(core.transpose(1, 2).reshape(2, 19, 12)))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in layer.parameters())


def test_repr_and_errors():
    layer = DilatedAttention(8, 2, [4, 8], [1, 2])
    assert "segment_lengths=[4, 8]" in repr(layer)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DilatedAttention(10, 3, [4], [1])
    with pytest.raises(ValueError, match="not divisible"):
        DilatedAttention(8, 2, [6], [4])
    with pytest.raises(ValueError, match="batch_first"):
        layer(torch.randn(3, 8))
    with pytest.raises(ValueError, match="need_weights=False"):
        layer(torch.randn(1, 5, 8), need_weights=True)
    with pytest.raises(ValueError, match="attn_mask"):
        layer(torch.randn(1, 5, 8), attn_mask=torch.ones(5, 5, dtype=torch.bool))
