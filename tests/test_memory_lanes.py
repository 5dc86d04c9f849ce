"""Memory lanes: one owner for a memory layer's state. `memory_lanes` always gives the caller's lanes back (also
on error), evaluation / retrieval recording / memory sweeps leave a model's lanes untouched, banks follow the
device, and retrievals come back from the call that asks for them."""
from __future__ import annotations

import pytest
import torch

from longlab.memory.lanes import Lanes, memory_lanes
from longlab.memory.memory_eval import loss_vs_memory
from longlab.memory.retrievals import record_retrievals
from longlab.memory.store import KVMemory
from longlab.models import TinyLM, TinyLMConfig, evaluate


def make_model(memory_size=64):
    torch.manual_seed(0)
    return TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                               memory_size=memory_size, memory_topk=4))


def fill(model, batch=2, windows=3, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(windows):
            model(torch.randint(0, 256, (batch, 16), generator=gen))
    layer = model.memory_layers()[0]
    return [b.keys[:, : len(b)].clone() for b in layer.memories], list(layer.lanes), layer.doc_counter


def assert_same_state(model, before):
    keys, lanes, docs = before
    layer = model.memory_layers()[0]
    assert list(layer.lanes) == lanes and layer.doc_counter == docs  # the very same lane objects
    for b, k in zip(layer.memories, keys):
        assert torch.equal(b.keys[:, : len(b)], k)


def test_memory_lanes_restores_on_exit_and_on_error():
    model = make_model()
    before = fill(model)
    model.train()
    with memory_lanes(model, sizes=[0, 8, 32]) as run:
        assert not model.training and [m is None for m in model.memory_layers()[0].memories] == [True, False, False]
        run(torch.randint(0, 256, (3, 16)))
        with pytest.raises(ValueError, match="batch of 3"):
            run(torch.randint(0, 256, (2, 16)))
    assert model.training
    assert_same_state(model, before)
    with pytest.raises(RuntimeError, match="boom"):
        with memory_lanes(model, sizes=[16]) as run:
            run(torch.randint(0, 256, (1, 16)))
            raise RuntimeError("boom")
    assert model.training and model.memory_layers()[0].memory_size == 64
    assert_same_state(model, before)


@pytest.mark.parametrize("caller", ["evaluate", "loss_vs_memory", "record_retrievals"])
def test_callers_leave_the_models_lanes_untouched_also_on_error(caller, monkeypatch):
    model = make_model()
    before = fill(model)
    tokens = torch.randint(0, 256, (16 * 4 + 1,), generator=torch.Generator().manual_seed(1))
    run = {"evaluate": lambda: evaluate(model, [tokens], 3),
           "loss_vs_memory": lambda: loss_vs_memory(model, tokens, [0, 16], progress=False),
           "record_retrievals": lambda: record_retrievals(model, tokens, memory_size=16, progress=False)}[caller]
    run()
    assert_same_state(model, before)
    layer = model.memory_layers()[0]
    calls = {"n": 0}
    real = type(layer).read_lane

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("failed mid-document")
        return real(self, *args)

    monkeypatch.setattr(type(layer), "read_lane", failing)
    with pytest.raises(RuntimeError, match="mid-document"):
        run()
    assert_same_state(model, before)


def test_memory_lanes_errors():
    dense = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=1))
    with memory_lanes(dense) as run:  # no memory layer: a plain run
        assert run.layers == []
    with pytest.raises(ValueError, match="no memory layer"):
        with memory_lanes(dense, require=True):
            pass
    with pytest.raises(ValueError, match="lane memory size"):
        with memory_lanes(make_model(), sizes=[16, -1]):
            pass


def test_lanes_reset_and_document_ids():
    lanes = Lanes(lambda c, device, dtype: KVMemory(c, 4, heads=1, device=device, dtype=dtype), 8)
    lanes.ensure(2)
    lanes.write(torch.ones(2, 1, 3, 4), torch.ones(2, 1, 3, 4))
    lanes.start_documents(torch.tensor([False, True]))
    assert [len(b) for b in lanes.banks] == [3, 0] and lanes.docs == [0, 1]
    lanes.write(torch.ones(2, 1, 2, 4), torch.ones(2, 1, 2, 4))
    assert lanes.banks[1].doc_ids[:2].tolist() == [1, 1]
    with pytest.raises(IndexError, match="lane 5"):
        lanes.reset(5)
    lanes.ensure(3)  # another batch size: fresh lanes
    assert [len(b) for b in lanes.banks] == [0, 0, 0]


def test_retrievals_come_back_from_the_call():
    model = make_model().eval()
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        first = model(x, x, return_retrievals=True)
        logits, loss, reads = model(x, x, return_retrievals=True)
        plain = model(x, x)
    assert len(first) == 3 and first[2][1].lanes == [None, None]  # empty memory: nothing read
    assert list(reads) == [1] and len(reads[1].lanes) == 2 and reads[1].lanes[0].positions.shape == (2, 16, 4)
    assert len(plain) == 2


@pytest.mark.cuda
def test_banks_follow_the_device():
    model = make_model()
    fill(model)
    model.to("cuda")
    with torch.no_grad():
        model(torch.randint(0, 256, (2, 16), device="cuda"))
    layer = model.memory_layers()[0]
    assert all(b.device.type == "cuda" and len(b) == 64 for b in layer.memories)  # moved, contents kept
