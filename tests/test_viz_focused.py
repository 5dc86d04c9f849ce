"""Focused Transformer figures draw from longlab objects: the layout heatmap marks exactly the layout's
positives and negatives, r_d curves carry the measured values and the 1/d line, the retrieval table lists the
entries with the largest weights."""
from __future__ import annotations

import random

import pytest
import torch

pytest.importorskip("plotly")

from longlab.memory.focused.crossbatch import make_layout  # noqa: E402
from longlab.memory.lanes import Retrieval  # noqa: E402
from viz.focused import (  # noqa: E402
    accuracy_figure,
    crossbatch_layout_explorer,
    crossbatch_layout_figure,
    distraction_figure,
    head_mass_figure,
    retrieved_rows,
    value_loss_race_figure,
)


def test_layout_figure_marks_positives_and_negatives():
    layout = make_layout(6, 3, random.Random(1), docs=list(range(6)))
    z = crossbatch_layout_figure(layout).data[0].z
    for i in range(6):
        srcs = layout.sources[i].tolist()
        assert z[i][i] == 1.0 and sorted(j for j in range(6) if z[i][j] == 0.5) == sorted(srcs[1:])
    title = crossbatch_layout_explorer(lanes=6, d=2, flag=False).layout.title.text
    assert title.startswith("Crossbatch, 6 lanes, d = 2")


def test_curves_tables_and_bars():
    fig = distraction_figure({"plain": {1: 1.0, 2: 0.5, 4: 0.25}, "focused": {"1": 1.0, "2": 0.8, "4": 0.6}})
    assert list(fig.data[0].y) == [1.0, 0.5, 0.25] and list(fig.data[2].y) == [1.0, 0.8, 0.6]
    assert fig.data[1].textposition != fig.data[2].textposition  # equal curves must not print labels on each other
    assert list(accuracy_figure({"m": [(1024, 0.5), (4096, 0.25)]}, "t", "x").data[0].y) == [0.5, 0.25]
    race = value_loss_race_figure({"focused": [{"step": 50, "value_loss": 3.3}, {"step": 100, "value_loss": 3.1}],
                                   "memorizing": [{"step": 50, "value_loss": 3.2}]}, 3.258, "t")
    assert [list(t.y) for t in race.data] == [[3.3, 3.1], [3.2]] and race.layout.shapes[0].y0 == 3.258
    assert list(head_mass_figure(torch.tensor([0.5, 0.25]), "t").data[0].y) == [0.5, 0.25]
    text = torch.tensor(list(b"abcd:xyz;efgh:uvw;"))
    ret = Retrieval(positions=torch.tensor([[[5, 14]]]), doc_ids=torch.zeros(1, 1, 2, dtype=torch.long),
                    scores=torch.tensor([[[2.0, 1.0]]]), weights=torch.tensor([[[0.2, 0.7]]]))
    rows = retrieved_rows(ret, text, 0, 0)
    assert [r["position"] for r in rows] == [14, 5] and "⟦u⟧" in rows[0]["text"] and "efgh:" in rows[0]["text"]
