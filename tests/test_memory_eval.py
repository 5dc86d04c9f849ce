"""Loss-vs-memory evaluation and retrieval recording: lanes are independent, memory 0 is local-only,
recorded retrievals respect read-before-write; the figures draw from these objects."""
from __future__ import annotations

import pytest
import torch

from longlab.memory.memory_eval import loss_vs_memory
from longlab.memory.retrievals import record_retrievals
from longlab.models import TinyLM, TinyLMConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                               memory_size=32, memory_topk=4)).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 256, (16 * 6 + 1,), generator=torch.Generator().manual_seed(1))


def lane_losses(model, tokens, size):
    layer = model.memory_layers()[0]
    layer.set_memory_size(size)
    out = []
    with torch.no_grad():
        for w in range(6):
            x, y = tokens[None, w * 16 : (w + 1) * 16], tokens[None, w * 16 + 1 : (w + 1) * 16 + 1]
            out.append(model(x, y, reduction="none")[1][0])
    layer.set_memory_size(model.config.memory_size)
    return torch.cat(out)


def test_lanes_equal_separate_runs(model, tokens):
    curve = loss_vs_memory(model, tokens, [0, 16, 48], progress=False)
    assert curve.token_losses.shape == (3, 96) and curve.memory_sizes == [0, 16, 48]
    for i, size in enumerate([0, 16, 48]):
        torch.testing.assert_close(curve.token_losses[i], lane_losses(model, tokens, size))
    torch.testing.assert_close(curve.token_losses[0, :16], curve.token_losses[2, :16])  # first window: no memory yet
    assert not torch.allclose(curve.token_losses[0], curve.token_losses[2])
    torch.testing.assert_close(curve.helped(-1), curve.token_losses[0] - curve.token_losses[2])
    assert "loss by memory size" in repr(curve)
    assert len(model.memory_layers()[0].memories) == 0  # evaluation leaves the model's memory empty


def test_loss_vs_memory_errors(tokens):
    dense = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=1))
    with pytest.raises(ValueError, match="no memory layer"):
        loss_vs_memory(dense, tokens, [0, 16])


def test_record_retrievals_reads_before_writing(model, tokens):
    ret = record_retrievals(model, tokens, memory_size=32, progress=False)
    assert ret.positions.shape == (2, 96, 4) and ret.gates.shape == (2,)
    assert (ret.positions[:, :16] == -1).all() and torch.isnan(ret.scores[:, :16]).all()
    query_pos = torch.arange(96)[None, :, None]
    window_start = (query_pos // 16) * 16
    later = ret.positions[:, 16:]
    assert (later >= 0).all() and (later < window_start[:, 16:]).all()  # only earlier windows
    assert (later >= window_start[:, 16:] - 32).all()  # FIFO of 32 keeps the last 32 positions
    torch.testing.assert_close(ret.weights[:, 16:].sum(-1), torch.ones(2, 80))
    assert (ret.scores[:, 16:, :-1] >= ret.scores[:, 16:, 1:]).all()
    assert ret.for_query(50)["positions"].shape == (2, 4) and len(ret.memory) == 32


def test_figures_draw_from_the_objects(model, tokens):
    pytest.importorskip("plotly")
    from viz.memory_explorer import (
        gates_figure,
        loss_vs_memory_figure,
        memory_helped_figure,
        recall_figure,
        retrieval_explorer,
        retrieval_figure,
    )

    ret = record_retrievals(model, tokens, memory_size=32, progress=False)
    fig = retrieval_figure(ret, 40)
    markers = [t for t in fig.data if t.type == "scatter"]
    assert sorted(x for t in markers for x in t.x) == sorted(ret.for_query(40)["positions"].flatten().tolist())
    assert "first window" in retrieval_figure(ret, 3).layout.title.text
    assert retrieval_explorer(ret, 40, flag=False).layout.title.text == fig.layout.title.text
    assert list(gates_figure(ret.gates).data[0].y) == pytest.approx(ret.gates.tolist())
    curve = loss_vs_memory(model, tokens, [0, 32], progress=False)
    fig = loss_vs_memory_figure(curve)
    assert list(fig.data[0].y) == pytest.approx(curve.mean_losses())
    assert fig.layout.yaxis.range[1] > max(curve.mean_losses())  # room for the top value label
    helped = memory_helped_figure(curve, smooth=4)
    assert helped.layout.xaxis.title.text.startswith("position")
    rows = [{"index": "exact (torch)", "recall": 1.0, "search_s": 0.01, "build_s": 0.0},
            {"index": "faiss hnsw", "recall": 0.9, "search_s": 0.002, "build_s": 0.1}]
    assert list(recall_figure(rows).data[0].y) == [1.0, 0.9]
