"""TinyLM kinds from related work run, learn (gradients reach every weight) and match their kernels."""
from __future__ import annotations

import pytest
import torch

from longlab.models import TinyLM, TinyLMConfig


@pytest.mark.parametrize("kind", ["linear", "pooled", "floatlike"])
def test_kind_runs_and_backpropagates(kind):
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(attention=kind, context=64, d_model=32, n_heads=2, n_layers=2, window=8))
    idx = torch.randint(0, 256, (2, 40))
    logits, loss = model(idx, idx)
    loss.backward()
    assert logits.shape == (2, 40, 256) and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("kind", ["linear", "pooled", "floatlike"])
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


def _twin(**changes):
    torch.manual_seed(0)
    base = TinyLM(TinyLMConfig(context=64, d_model=32, n_heads=2, n_layers=2)).eval()
    other = TinyLM(TinyLMConfig(context=64, d_model=32, n_heads=2, n_layers=2, **changes)).eval()
    other.load_state_dict(base.state_dict())
    return base, other


@pytest.mark.parametrize("window, leak", [(64, None), (5, 1.0)])
def test_rerope_position_reduces_to_rope(window, leak):
    base, other = _twin(position="rerope", rerope_window=window, rerope_leak=leak)
    idx = torch.randint(0, 256, (2, 50))
    with torch.no_grad():
        torch.testing.assert_close(other(idx)[0], base(idx)[0], atol=1e-5, rtol=0)


def test_rerope_position_changes_far_tokens_only():
    base, other = _twin(position="rerope", rerope_window=8, rerope_leak=4.0)
    idx = torch.randint(0, 256, (1, 50))
    with torch.no_grad():
        a, b = base(idx)[0], other(idx)[0]
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-5, rtol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-4


def test_position_config_errors():
    with pytest.raises(ValueError, match="position"):
        TinyLMConfig(position="alibi")
    with pytest.raises(ValueError, match="rerope_window"):
        TinyLMConfig(position="rerope", rerope_window=0)
    with pytest.raises(ValueError, match="leak"):
        TinyLMConfig(position="rerope", rerope_leak=0.5)
    model = TinyLM(TinyLMConfig(attention="sliding", position="rerope", context=16, d_model=16, n_heads=2))
    with pytest.raises(ValueError, match="position='rope'"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_floatlike_mantissa_config():
    with pytest.raises(ValueError, match="float_mantissa"):
        TinyLMConfig(float_mantissa=-1)
    # m large enough that every distance < context is on the grid: the layer is dense attention
    torch.manual_seed(0)
    dense = TinyLM(TinyLMConfig(context=32, d_model=16, n_heads=2)).eval()
    wide = TinyLM(TinyLMConfig(context=32, d_model=16, n_heads=2, attention="floatlike", float_mantissa=5)).eval()
    wide.load_state_dict(dense.state_dict())
    idx = torch.randint(0, 256, (1, 32))
    with torch.no_grad():
        torch.testing.assert_close(wide(idx)[0], dense(idx)[0], atol=1e-5, rtol=0)
