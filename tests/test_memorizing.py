"""Memorizing Transformer layer: each property of the paper's kNN layer tested directly, plus the memory
attention against a dense float64 brute-force reference."""
from __future__ import annotations

import copy

import pytest
import torch

from longlab.memory.memorizing import MemorizingAttention
from longlab.models import TinyLM, TinyLMConfig
from longlab.models.layers import DenseAttention


def make_layer(memory_size=64, topk=4, **kw):
    torch.manual_seed(0)
    cfg = TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=1, attention="memorizing", memory_size=memory_size,
                       memory_topk=topk, **kw)
    return MemorizingAttention(cfg).double(), cfg


def windows(count, batch=2, n=16, d=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n, d, generator=gen, dtype=torch.float64) for _ in range(count)]


def local_only(layer, cfg, x):
    dense = DenseAttention(cfg).double()
    dense.load_state_dict(layer.state_dict(), strict=False)
    return dense(x, torch.arange(x.shape[1]))


def test_gate_to_minus_infinity_gives_exactly_local_attention():
    layer, cfg = make_layer()
    x1, x2 = windows(2)
    with torch.no_grad():
        layer.gate_bias.fill_(float("-inf"))
    pos = torch.arange(16)
    layer(x1, pos)
    assert len(layer.memories[0]) == 16  # memory is populated, yet ignored
    assert torch.equal(layer(x2, pos), local_only(layer, cfg, x2))


def test_memory_is_read_before_write():
    layer, cfg = make_layer()
    x1, x2 = windows(2)
    pos = torch.arange(16)
    first = layer(x1, pos)  # empty memory: a window never retrieves its own keys
    torch.testing.assert_close(first, local_only(layer, cfg, x1))
    assert [len(m) for m in layer.memories] == [16, 16]
    second, reads = layer(x2, pos, return_retrievals=True)  # the call that asks gets the retrievals back
    found = reads.lanes[0]
    assert int(found.positions.max()) < 16  # retrieved only from the earlier window
    assert found.positions.shape == (2, 16, 4) and reads.extras["gate"].shape == (2,)
    assert not hasattr(layer, "last_read") and not hasattr(layer, "record")  # nothing left on the layer
    assert not torch.allclose(second, local_only(layer, cfg, x2))
    assert [len(m) for m in layer.memories] == [32, 32]


def test_gradients_never_reach_stored_keys():
    layer, _ = make_layer()
    x1, x2 = windows(2)
    x1.requires_grad_(True)
    pos = torch.arange(16)
    layer(x1, pos)
    out = layer(x2.requires_grad_(True), pos)
    out.sum().backward()
    assert x1.grad is None  # window 1 reaches window 2 only through memory: no graph edge
    assert x2.grad is not None and layer.log_tau.grad.abs().sum() > 0 and layer.gate_bias.grad.abs().sum() > 0
    assert all(not m.keys.requires_grad and not m.values.requires_grad for m in layer.memories)


def test_document_boundary_empties_memory():
    layer, cfg = make_layer()
    x1, x2 = windows(2)
    pos = torch.arange(16)
    layer(x1, pos)
    out = layer(x2, pos, doc_start=torch.tensor([False, True]))
    assert [len(m) for m in layer.memories] == [32, 16]  # lane 1 was cleared, then wrote its new window
    torch.testing.assert_close(out[1], local_only(layer, cfg, x2)[1])
    assert set(layer.memories[1].doc_ids[:16].tolist()) == {1}


def test_memory_attention_matches_bruteforce_reference():
    layer, cfg = make_layer(memory_size=40, topk=5)
    xs = windows(4)
    pos = torch.arange(16)
    with torch.no_grad():
        layer.gate_bias.fill_(float("inf"))  # g = 1: output is the memory attention alone
    stored_k, stored_v = [], []
    for x in xs[:3]:
        _, k, v = layer.project(x)
        stored_k.append(k), stored_v.append(v)
        layer(x, pos)
    q, _, _ = layer.project(xs[3])
    keys, values = torch.cat(stored_k, 2)[:, :, -40:], torch.cat(stored_v, 2)[:, :, -40:]  # FIFO keeps newest 40
    cos = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).transpose(-1, -2)
    top, idx = cos.topk(5, dim=-1)
    weights = (layer.log_tau.exp()[None, :, None, None] * top).softmax(-1)
    picked = values[:, :, None].expand(-1, -1, 16, -1, -1).gather(3, idx[..., None].expand(-1, -1, -1, -1, 8))
    want = layer.merge_heads((weights[..., None] * picked).sum(3))
    torch.testing.assert_close(layer(xs[3], pos), want)


def test_memory_size_zero_and_fifo_capacity():
    layer, cfg = make_layer(memory_size=20)
    pos = torch.arange(16)
    for x in windows(3):
        layer(x, pos)
    assert len(layer.memories[0]) == 20 and layer.memories[0].positions[layer.memories[0].order()].min() == 28
    layer.set_memory_size(0)
    x = windows(1, seed=5)[0]
    torch.testing.assert_close(layer(x, pos), local_only(layer, cfg, x))


def test_tinylm_with_memorizing_layer_trains_and_resets():
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                                memory_size=64, memory_topk=4))
    x = torch.randint(0, 256, (3, 16))
    _, loss = model(x, x)
    loss.backward()
    model(x, x)
    layer = model.memory_layers()[0]
    assert [len(m) for m in layer.memories] == [32] * 3
    model.reset_memory()
    assert [len(m) for m in layer.memories] == [0] * 3
    assert "memory_size=64" in repr(layer)


@pytest.mark.cuda
def test_tinylm_with_memory_gives_the_same_losses_on_cuda():
    cfg = TinyLMConfig(context=32, d_model=32, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                       memory_size=64, memory_topk=4)
    torch.manual_seed(0)
    cpu_model = TinyLM(cfg).eval()
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    tokens = torch.randint(0, 256, (2, 4 * 32 + 1), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for w in range(4):  # memory fills past its 64 entries, so FIFO eviction runs on the GPU too
            x, y = tokens[:, w * 32 : (w + 1) * 32], tokens[:, w * 32 + 1 : (w + 1) * 32 + 1]
            _, want = cpu_model(x, y, reduction="none")
            _, got = gpu_model(x.cuda(), y.cuda(), reduction="none")
            torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
