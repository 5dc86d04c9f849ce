"""LongMem joint attention: local causal (RoPE) and memory (no positions) fused by a per-head gate, against a dense
float64 reference, forward and gradients; the layer itself against the reference on its own projections and
retrievals; a gate near 0 gives the local output."""
from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from longlab.memory.longmem.attention import LongMemAttention, fused_attention, fused_reference
from longlab.models import TinyLMConfig
from longlab.models.layers import DenseAttention


def inputs(b, h, n, k, d, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    q, kk, v, q_raw = (make(b, h, n, d).requires_grad_() for _ in range(4))
    mem_k, mem_v = make(b, h, n, k, d), make(b, h, n, k, d)  # retrieved entries: detached, no grad
    gate_bias = make(h).requires_grad_()
    return q, kk, v, q_raw, mem_k, mem_v, gate_bias


@given(b=st.integers(1, 2), h=st.integers(1, 3), n=st.integers(1, 9), k=st.integers(1, 8),
       d=st.sampled_from([2, 4, 8]), seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_fusion_matches_float64_reference_forward_and_gradients(b, h, n, k, d, seed, dtype):
    args = inputs(b, h, n, k, d, dtype, seed)
    q, kk, v, q_raw, mem_k, mem_v, gate_bias = args
    out = fused_attention(q, kk, v, q_raw, mem_k, mem_v, torch.sigmoid(gate_bias))
    ref = fused_reference(q, kk, v, q_raw, mem_k, mem_v, torch.sigmoid(gate_bias))
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * weights).sum(), (q, kk, v, q_raw, gate_bias))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, kk, v, q_raw, gate_bias))
    for name, g, r in zip(("q", "k", "v", "q_raw", "gate"), grads, ref_grads):
        torch.testing.assert_close(g.double(), r.double(), rtol=tol * 10, atol=tol * 10, msg=lambda m: f"{name}: {m}")


def make_layer(seed=0):
    torch.manual_seed(seed)
    cfg = TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=1, attention="longmem", memory_size=64,
                       memory_topk=8, extra={"chunk_size": 4})
    return LongMemAttention(cfg).double(), cfg


def test_layer_equals_reference_on_its_own_projections_and_retrievals():
    layer, _ = make_layer()
    gen = torch.Generator().manual_seed(3)
    x1, x2 = (torch.randn(2, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    pos = torch.arange(16)
    layer(x1, pos)  # fills memory with window 1
    with torch.no_grad():
        layer.gate_bias.copy_(torch.tensor([-0.7, 1.3]))
    x2.requires_grad_()
    out = layer(x2, pos, write_memory=False)  # the bank keeps window 1 only, for the reference's search below
    q_raw, k_raw, v = layer.project(x2)
    q, k = layer.rotate(q_raw, k_raw, pos)
    hits = [layer.memories[i].search(q_raw[i].detach(), 8) for i in range(2)]
    assert all(h.positions.max() < 16 for h in hits)  # window 2 reads only window 1 (its own write comes after)
    mem_k = torch.stack([h.keys for h in hits])
    mem_v = torch.stack([h.values for h in hits])
    ref = layer.merge_heads(fused_reference(q, k, v, q_raw, mem_k, mem_v, layer.gate()))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    g_out = torch.autograd.grad(out.sum(), (x2, layer.gate_bias), retain_graph=True)
    g_ref = torch.autograd.grad(ref.sum(), (x2, layer.gate_bias))
    for g, r in zip(g_out, g_ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_gate_near_zero_gives_the_local_output():
    layer, cfg = make_layer()
    gen = torch.Generator().manual_seed(4)
    x1, x2 = (torch.randn(2, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    pos = torch.arange(16)
    layer(x1, pos)
    with torch.no_grad():
        layer.gate_bias.fill_(-60.0)  # g = sigmoid(-60) ~ 1e-26
    dense = DenseAttention(cfg).double()
    dense.load_state_dict(layer.state_dict(), strict=False)
    out = layer(x2, pos)
    torch.testing.assert_close(out, dense(x2, pos), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.gate_bias.fill_(0.0)
    assert not torch.allclose(layer(x2, pos), dense(x2, pos), atol=1e-3)  # at g = 1/2 memory does change it
