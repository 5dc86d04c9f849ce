"""Growing a TinyLM by one identity-initialised layer keeps its function exactly, and the new layer trains."""
from __future__ import annotations

import pytest
import torch

from longlab.models import TinyLM, TinyLMConfig, grow_by_one_layer


@pytest.mark.parametrize("kinds, insert_at", [(("dense", "focused"), 1), (("dense",), 0), (("dense", "dense"), 2)])
def test_grown_model_computes_exactly_what_the_source_did(kinds, insert_at):
    torch.manual_seed(0)
    source = TinyLM(TinyLMConfig(context=16, d_model=32, n_heads=2, n_layers=len(kinds), attention=kinds,
                                 memory_size=64, memory_topk=8)).double().eval()
    grown = grow_by_one_layer(source, insert_at).eval()
    assert grown.config.attention == kinds[:insert_at] + ("dense",) + kinds[insert_at:]
    tokens = torch.randint(0, 256, (3, 16))
    torch.testing.assert_close(grown(tokens)[0], source(tokens)[0], rtol=0, atol=1e-12)
    # the new layer is not frozen: one step moves its output projection off zero and changes the function
    targets = torch.randint(0, 256, (3, 16))
    grown.train()
    _, loss = grown(tokens, targets)
    loss.backward()
    assert grown.blocks[insert_at].attn.proj.weight.grad.abs().sum() > 0


def test_grow_refuses_a_place_outside_the_model():
    source = TinyLM(TinyLMConfig(context=8, d_model=16, n_heads=2, n_layers=2))
    with pytest.raises(ValueError, match="insert_at must be in 0..2"):
        grow_by_one_layer(source, 3)
