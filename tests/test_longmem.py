"""LongMem model: the residuals telescope, the backbone is frozen (no grad, no autograd, never changes), memory
holds the backbone layer's keys detached and is read before it is written, lanes never see each other's chunks,
save/load references the backbone, clear errors."""
from __future__ import annotations

import pytest
import torch

from longlab.memory.lanes import memory_lanes
from longlab.memory.longmem.model import LongMem, LongMemConfig, load_longmem, save_longmem
from longlab.models import TinyLM, TinyLMConfig, save_checkpoint


def backbone(n_layers=4, d_model=16, context=16, seed=0, attention="dense"):
    torch.manual_seed(seed)
    return TinyLM(TinyLMConfig(context=context, d_model=d_model, n_heads=2, n_layers=n_layers, attention=attention))


def longmem(n_layers=4, reduction=2, memory_layer=0, double=True, **kw):
    model = LongMem(backbone(n_layers), LongMemConfig(reduction=reduction, memory_layer=memory_layer,
                                                      memory_size=64, topk=8, **kw))
    return model.double() if double else model


def tokens(batch=2, n=16, seed=1):
    return torch.randint(0, 256, (batch, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_layers, reduction", [(4, 2), (3, 2), (6, 3), (3, 1)])
def test_zeroed_sidenet_reproduces_the_backbone(n_layers, reduction):
    model = longmem(n_layers, reduction)
    model.side.zero_sublayers()
    for window in range(3):  # memory fills; a zeroed layer ignores it
        idx = tokens(seed=window)
        positions = torch.arange(idx.shape[1])
        hidden, memory_kv = model.backbone_states(idx, positions)
        x = model.side(hidden, positions, {"memory_kv": memory_kv, "write_memory": False})
        torch.testing.assert_close(x, hidden[-1], rtol=0, atol=1e-12)  # H_0 + sum(H_hi - H_lo) = H_L
        logits, _ = model(idx)
        torch.testing.assert_close(logits, model.backbone(idx)[0], rtol=0, atol=1e-12)
    assert len(model.side.memory.memories[0]) == 3 * 16


def test_spans_tile_the_backbone_and_layers_start_as_copies():
    model = longmem(3, 2, double=False)
    assert model.side.spans == [(0, 2), (2, 3)] and model.side.init_from == [1, 2]
    for block, source in zip(model.side.blocks, model.side.init_from):
        theirs = model.backbone.blocks[source].state_dict()
        for name, tensor in block.state_dict().items():
            if name != "attn.gate_bias":
                assert torch.equal(tensor, theirs[name]), name
    assert model.config.source_layer == 1  # memory written by the layer the memory SideNet layer copies
    assert torch.allclose(model.side.memory.gate(), torch.full((2,), 0.5))  # both halves start equal


def memory_queries(model, idx):
    """The memory layer's pre-RoPE queries (B, H, N, D) for windows idx."""
    seen = {}
    hook = model.side.memory.register_forward_hook(lambda layer, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        model(idx, write_memory=False)
    hook.remove()
    return model.side.memory.project(seen["x"])[0]


def test_memory_queries_see_context_by_default():
    """SideNet layer 0 reads H_0, the token embedding: were memory there, every occurrence of a byte would send one
    and the same query, whatever precedes it. The default puts memory in the last SideNet layer, past context."""
    idx = tokens(1, 16)
    idx[0, 3] = idx[0, 11] = idx[0, 14] = 7  # one byte, three different contexts
    default = LongMem(backbone(3), LongMemConfig(memory_size=64, topk=8)).double()
    assert default.config.memory_layer == 1 == len(default.side.spans) - 1 and default.config.source_layer == 2
    first = longmem(3, 2, memory_layer=0)
    for model, context_free in ((first, True), (default, False)):
        q = memory_queries(model, idx)[0]
        gaps = [(q[:, i] - q[:, j]).abs().max().item() for i, j in ((3, 11), (3, 14), (11, 14))]
        if context_free:
            assert gaps == [0.0, 0.0, 0.0]
        else:
            assert min(gaps) > 1e-2 * q.abs().max().item(), gaps


def test_backbone_frozen_memory_detached_and_read_before_write():
    model = longmem(double=False)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    for window in range(3):
        idx = tokens(seed=window)
        hidden, (k_src, v_src) = model.backbone_states(idx, torch.arange(16))
        assert all(h.grad_fn is None and not h.requires_grad for h in hidden)  # forward without autograd
        _, loss, reads = model(idx, tokens(seed=window + 10), return_retrievals=True)
        lanes = reads[0].lanes
        assert all((r is None) == (window == 0) for r in lanes)  # window 0 finds nothing: read before write
        optimizer.zero_grad()
        loss.backward()
        assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
        if window:
            assert model.side.memory.gate_bias.grad.abs().sum() > 0  # the memory half is learning
        optimizer.step()
        bank = model.side.memory.memories[0].chunks
        assert not bank.keys.requires_grad and not bank.values.requires_grad
        payload = bank.values[:, bank.count - 4: bank.count]  # lane 0's newest 4 chunks: (H, 4, [4 keys, 4 values])
        assert torch.equal(payload[..., :32].reshape(2, 16, 8), k_src[0])  # the backbone layer's own keys
        assert torch.equal(payload[..., 32:].reshape(2, 16, 8), v_src[0])
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_no_lane_retrieves_another_lanes_chunks():
    model = longmem(double=True)
    docs = [tokens(1, 16 * 4, seed=s)[0] for s in (3, 4, 5)]
    with memory_lanes(model) as run:  # three lanes in one batch
        batched = []
        for w in range(4):
            x = torch.stack([d[16 * w: 16 * (w + 1)] for d in docs])
            logits, _, reads = run(x, doc_start=torch.tensor([w == 0] * 3), return_retrievals=True)
            batched.append(logits)
            if w:
                for found in reads[0].lanes:
                    assert found.positions.max() < 16 * w and found.positions.min() >= 0  # this lane's past only
            assert [len(lane.bank) for lane in model.side.memory.lanes] == [16 * (w + 1)] * 3
    for i, doc in enumerate(docs):  # each lane alone gives the same logits: nothing leaks between lanes
        with memory_lanes(model) as run:
            for w in range(4):
                logits, _ = run(doc[None, 16 * w: 16 * (w + 1)], doc_start=torch.tensor([w == 0]))
                torch.testing.assert_close(logits[0], batched[w][i], rtol=0, atol=1e-10)


def test_document_start_clears_only_that_lane():
    model = longmem(double=False)
    with memory_lanes(model) as run:
        run(tokens(seed=1))
        run(tokens(seed=2), doc_start=torch.tensor([True, False]))
        sizes = [len(lane.bank) for lane in model.side.memory.lanes]
    assert sizes == [16, 32]


def test_save_load_references_the_backbone(tmp_path):
    model = longmem(double=False)
    bb_path = save_checkpoint(model.backbone, tmp_path / "bb" / "backbone.safetensors")
    with torch.no_grad():
        model.side.memory.gate_bias.fill_(0.3)
    path = save_longmem(model, tmp_path / "side" / "sidenet.safetensors", bb_path)
    back, meta = load_longmem(path)
    assert meta["backbone"]["path"] == "../bb/backbone.safetensors"
    assert not any(name.startswith("backbone") for name in back.side.state_dict())
    idx = tokens()
    torch.testing.assert_close(back(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)
    other = save_checkpoint(backbone(seed=5), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="sha256 differs"):
        load_longmem(path, other)
    wide = save_checkpoint(backbone(d_model=32), tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="backbone has .*'d_model': 32.* but the SideNet was built for"):
        load_longmem(path, wide)


@pytest.mark.parametrize("make, match", [
    (lambda: LongMem(backbone(), LongMemConfig(memory_layer=2)), "memory_layer=2 is out of range: the SideNet has 2"),
    (lambda: LongMem(backbone(), LongMemConfig(source_layer=4)), "source_layer=4 is out of range: the backbone has 4"),
    (lambda: LongMem(backbone(), LongMemConfig(memory_size=30)), "memory_size=30 is not a multiple of chunk_size=4"),
    (lambda: LongMem(backbone(), LongMemConfig(topk=6)), "memory_topk=6 is not a multiple of chunk_size=4"),
    (lambda: LongMem(backbone(attention="focused")), "backbone layer 0 is 'focused'"),
    (lambda: longmem(double=False)(tokens(n=10)), "window length=10 is not a multiple of chunk_size=4"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_longmem_is_a_tinylm_kind_writing_its_own_keys():
    from longlab.memory.memory_eval import loss_vs_memory
    from longlab.models import attention_kinds

    assert "longmem" in attention_kinds()
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "longmem"),
                                memory_size=64, memory_topk=8))
    curve = loss_vs_memory(model, tokens(1, 16 * 4 + 1, seed=2)[0], [0, 64], progress=False)
    assert curve.token_losses.shape == (2, 64)
    assert torch.equal(curve.token_losses[0, :16], curve.token_losses[1, :16])  # window 1: nothing to read yet
    assert not torch.equal(curve.token_losses[0, 16:], curve.token_losses[1, 16:])  # later windows read memory


def test_key_drift_is_exactly_zero_for_identical_keys_and_positive_otherwise():
    from longlab.memory.longmem.staleness import key_drift, probe_windows

    keys = torch.randn(2, 3, 5, 8)
    assert key_drift(keys, keys.clone()) == {"drift": 0.0, "drift_max": 0.0, "changed": 0.0}
    moved = keys.clone()
    moved[0, 0, 0] += 1.0
    drift = key_drift(keys, moved)
    assert drift["drift"] > 0 and drift["changed"] == pytest.approx(1 / 30)
    with pytest.raises(ValueError, match="must match"):
        key_drift(keys, keys[:1])
    with pytest.raises(ValueError, match="need windows"):
        probe_windows(torch.zeros(10, dtype=torch.long), 8, 2)


def test_a_window_that_writes_only_its_last_tokens_writes_those_of_the_given_memory_kv():
    """MemoryLayer.forward(write_from=s) stores tokens s.. only; with memory_kv (the frozen backbone's keys) the
    LongMem layer must store the same tokens of memory_kv, not all of them."""
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "longmem"),
                                memory_size=64, memory_topk=8))
    layer = model.blocks[1].attn
    x, positions = torch.randn(1, 16, 16), torch.arange(16)
    memory_kv = (torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8))
    with memory_lanes(model, sizes=[64]) as run:
        layer(x, positions, memory_kv=memory_kv, write_from=8)
        bank = run.layers[0].memories[0]
    want = layer.bank_factory(64).add(memory_kv[0][0, :, 8:], memory_kv[1][0, :, 8:])
    assert len(bank) == len(want) == 8
    n = len(want.chunks)
    for got, expected in ((bank.chunks.keys, want.chunks.keys), (bank.chunks.values, want.chunks.values)):
        torch.testing.assert_close(got[:, :n], expected[:, :n], rtol=0, atol=0)
