"""viz.longmem: every figure is built from a LongMem object or its records and holds only finite numbers; the
data-flow figure shows what the model object says; the retrieved-chunks table is the bank's chunks as text."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
import torch

from longlab.memory.longmem.model import LongMem, LongMemConfig
from longlab.memory.retrievals import record_retrievals
from longlab.models import TinyLM, TinyLMConfig
from viz import longmem as vl


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = LongMem(TinyLM(TinyLMConfig(context=32, d_model=16, n_heads=2, n_layers=4)),
                    LongMemConfig(reduction=2, memory_layer=1, memory_size=64, topk=8))
    text = torch.tensor(list(b"def add(a, b):\n    return a + b\n" * 4))[:96]
    return model, record_retrievals(model, text, memory_size=64, progress=False)


def finite_json(fig: go.Figure) -> None:
    assert isinstance(fig, go.Figure)
    json.dumps(json.loads(fig.to_json()), allow_nan=False)


def test_dataflow_figure_is_drawn_from_the_model(small):
    model, _ = small
    fig = vl.dataflow_figure(model)
    finite_json(fig)
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "+H<sub>2</sub> − H<sub>0</sub>" in texts and "+H<sub>4</sub> − H<sub>2</sub>" in texts
    assert "SideNet layer 1 + memory" in texts and "SideNet layer 0 + memory" not in texts
    assert "4 frozen backbone layers, 2 SideNet layers (r = 2)" in fig.layout.title.text


def test_retrieved_chunks_are_the_stored_bytes(small):
    model, ret = small
    query = ret.tokens.numel() - 1
    rows = vl.retrieved_chunks(ret, query, 0, 4)
    assert len(rows) == 2 and [r["rank"] for r in rows] == [1, 2]  # K = 8 tokens = 2 chunks of 4
    for row in rows:
        first = int(row["bytes"].split("-")[0])
        assert first % 4 == 0 and first + 4 <= 64  # whole chunks from the windows read before this one
        text = bytes(ret.tokens[first: first + 4].tolist()).decode()
        assert row["chunk"] == text.replace("\n", "⏎").replace(" ", "␣")
    assert rows[0]["score q·mean(k)"] >= rows[1]["score q·mean(k)"]
    assert vl.retrieved_chunks(ret, 3, 0, 4) == []  # first window: memory still empty
    finite_json(vl.retrieved_chunks_figure(ret, 3, 1, 4))
    finite_json(vl.retrieved_chunks_explorer(ret, 4, flag=False))


def test_record_figures_hold_only_finite_numbers():
    history = [{"step": 0, "drift": 0.0}, {"step": 5, "train_loss": 2.0, "val_loss": 2.5, "drift": 0.0}]
    finite_json(vl.training_curve_figure(history, 2.4))
    evaluation = {"memory_sizes": [0, 64], "mean_loss": [2.0, 1.9], "mean_backbone": 2.1, "documents": [{}]}
    finite_json(vl.loss_vs_memory_figure(evaluation))
    staleness = {"memorizing": {"history": [{"step": 0, "drift": 0.0}, {"step": 5, "drift": 0.01}]},
                 "frozen_backbone": {"history": history}}
    finite_json(vl.staleness_figure(staleness))
    finite_json(vl.compare_memorizing_figure({**evaluation, "eval_bytes": 100},
                                             {"memory_sizes": [0, 64], "mean_loss": [2.1, 1.8]}))


def test_live_explorer_sends_json(small):
    ipywidgets = pytest.importorskip("ipywidgets")
    _, ret = small
    box = vl.retrieved_chunks_explorer(ret, 4, flag=True)
    assert isinstance(box, ipywidgets.VBox)
    box.controls["query"].value = 2
    box.controls["head"].value = 1
    json.dumps(json.loads(go.Figure(box.figure).to_json()), allow_nan=False)


def test_letter_query_picks_a_best_chunk_with_a_letter(small):
    _, ret = small
    query, head = vl.letter_query(ret, 4)
    first = int(ret.positions[head, query, 0])
    assert first >= 0 and any(chr(b).isalpha() for b in ret.tokens[first: first + 4].tolist())
