"""No gradient reaches a kNN memory: window 1 changes window 2's loss through the memory, yet autograd finds no
path from window 2's loss back to window 1 (checked on the committed Memorizing Transformer checkpoint)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from longlab.analysis.memory_gradient import memory_gradient_check
from longlab.models import TinyLM, TinyLMConfig, load_checkpoint
from longlab.tasks import held_out_long_files

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "tiny_memorizing.safetensors"


def test_memory_passes_information_forward_but_no_gradient_backward():
    model, _ = load_checkpoint(CHECKPOINT)
    tokens = held_out_long_files(1)[0].tokens()[: 3 * model.config.context]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    check = memory_gradient_check(model, tokens, memory_size=1024)
    assert abs(check.loss_with_memory - check.loss_without_memory) > 1e-4  # the forward dependency is real
    assert check.stored_tensors > 0 and not check.stored_requires_grad
    assert not check.gradient_reaches_window1
    assert check.local_gradient_norm > 0  # gradients do flow inside window 2
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())  # model untouched


def test_bad_input():
    dense = TinyLM(TinyLMConfig(context=16, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="memory layer"):
        memory_gradient_check(dense, torch.zeros(64, dtype=torch.long))
    model, _ = load_checkpoint(CHECKPOINT)
    with pytest.raises(ValueError, match="2 \\* context"):
        memory_gradient_check(model, torch.zeros(10, dtype=torch.long))
