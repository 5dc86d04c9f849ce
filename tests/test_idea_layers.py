"""TinyLM kinds from related work run, learn (gradients reach every weight) and match their kernels."""
from __future__ import annotations

import pytest
import torch

from longlab.models import TinyLM, TinyLMConfig


@pytest.mark.parametrize("kind", ["linear"])
def test_kind_runs_and_backpropagates(kind):
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(attention=kind, context=64, d_model=32, n_heads=2, n_layers=2, window=8))
    idx = torch.randint(0, 256, (2, 40))
    logits, loss = model(idx, idx)
    loss.backward()
    assert logits.shape == (2, 40, 256) and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("kind", ["linear"])
def test_kind_is_causal(kind):
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(attention=kind, context=64, d_model=32, n_heads=2, n_layers=2, window=8)).eval()
    idx = torch.randint(0, 256, (1, 40))
    changed = idx.clone()
    changed[0, 30:] = (changed[0, 30:] + 1) % 256
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert (a[:, 30:] - b[:, 30:]).abs().max() > 1e-4
