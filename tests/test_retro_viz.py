"""RETRO figures: the causal-shift grid is drawn from chunk_of_token, widgets render static when headless."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from longlab.memory.retro.cca import chunk_of_token
from longlab.memory.retro.data import RetroWindows
from viz.retro import (
    causal_shift_explorer,
    causal_shift_figure,
    gain_vs_overlap_figure,
    loss_along_window_figure,
    loss_by_k_figure,
    neighbours_table,
)


@pytest.mark.parametrize("n, m", [(12, 4), (16, 1), (30, 7)])
def test_causal_shift_cells_follow_the_rule(n, m):
    fig = causal_shift_figure(n, m)
    z = torch.tensor(fig.data[0].z)
    n = n - n % m
    u = chunk_of_token(n, m)
    reads = z == 1.0
    assert reads.shape == (n // m, n) and (reads.sum(0) == (u >= 0).long()).all()
    assert all(reads[u[i], i] for i in range(n) if u[i] >= 0)
    assert fig.layout.xaxis.title.text and "bytes" in fig.layout.xaxis.title.text


def test_explorer_is_static_headless(monkeypatch):
    monkeypatch.setenv("LONGLAB_HEADLESS", "1")
    assert isinstance(causal_shift_explorer(16, 4), go.Figure)


def test_neighbours_table_and_result_figures():
    p, n_chunks, k, m = 2, 3, 2, 4
    tokens = torch.tensor(list(b"abcdefghijklm") * 2).view(p, -1)[:, : n_chunks * m + 1]
    nb = torch.full((p, n_chunks, k, 2 * m), ord("x"), dtype=torch.uint8)
    w = RetroWindows(tokens, torch.zeros(p, dtype=torch.long), torch.zeros(p, dtype=torch.long), nb,
                     torch.full((p, n_chunks, k), 2 * m), torch.ones(p, n_chunks, k, dtype=torch.long),
                     torch.full((p, n_chunks, k), 32), torch.full((p, n_chunks, k), 0.5))
    text = neighbours_table(w, ["own.py", "other.py"], 0, 1)
    assert "`efgh`" in text and "other.py @ 32" in text and "0.500" in text and text.count("\n| ") == 1 + k
    fig = loss_by_k_figure({"0": 2.0, "1": 1.9, "2": 1.8, "4": 1.7}, leak=1.2, at_k=2, control=1.95)
    assert len(fig.data) == 3 and fig.data[1].x == (2,) and fig.data[2].y == (1.95,)
    assert len(loss_along_window_figure(torch.ones(2, 12), torch.zeros(2, 12), m).data) == 2
    bins = [{"overlap": "0-3", "chunks": 1, "mean_gain": 0.1, "share_of_gain": 1.0}]
    fig = gain_vs_overlap_figure([0.1], [2], bins)
    assert len(fig.data) == 2 and fig.data[1].text == ("+0.10<br>1 chunks",)
