"""Figures of notebooks 01/02 are drawn from the pattern objects (viz.dilated_explorer, viz.allocation)."""
from __future__ import annotations

import numpy as np
import pytest

from longlab.analysis.allocation import keys_vs_distance, log_binned
from longlab.attention.patterns import Dense, Dilated, SlidingWindow

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

import viz.dilated_explorer as explorer  # noqa: E402
from viz.allocation import allocation_explorer, path_length_figure, structural_figure  # noqa: E402


def test_query_keys_marks_exactly_the_patterns_keys():
    pattern = Dilated.geometric(4, 2, 3)
    fig = explorer.query_keys(pattern, 32, 4, 1, 12)
    keys = pattern.keys_for(12, 1, 4, 32)
    for b, trace in enumerate(fig.data[:3]):
        assert list(trace.x) == keys[b].tolist()
    assert set(fig.data[3].x) == set(np.concatenate([k.numpy() for k in keys.values()]).tolist())


def test_head_grid_and_flops_and_masking_figures():
    pattern = Dilated.geometric(4, 2, 3)
    grid = explorer.head_grid(pattern, 16, 4)
    assert len(grid.data) == 4
    fig = explorer.flops_figure({"dense": Dense(), "dilated": pattern}, [64, 128], head_dim=8, heads=2)
    assert list(fig.data[1].y) == [pattern.flops(64, 8, 2), pattern.flops(128, 8, 2)]
    mask_fig = explorer.masking_vs_gathering(Dilated.geometric(8, 2, 3), 64, 4, 0, 8)
    heat = mask_fig.data[0]
    assert np.array_equal(np.asarray(heat.z), Dilated.geometric(8, 2, 3).block_occupancy(4, 64, 8)[0].numpy())


def test_runtime_figure_and_table():
    rows = [{"N": 1024, "causal": False, "pass": "fwd", "dilated_s": 0.1, "sdpa_s": 0.4, "speedup": 4.0}]
    fig = explorer.runtime_figure(rows)
    assert list(fig.data[0].y) == [0.4] and fig.data[1].text[0] == "4.0x"
    assert "| 1024 | False | fwd |" in explorer.markdown_table(rows)


def test_structural_figure_plots_binned_counts():
    pattern = SlidingWindow(4)
    fig = structural_figure({"sliding window 4": pattern}, 2, 64, fit=None)
    d, counts = keys_vs_distance(pattern, 2, 64)
    centres, means = log_binned(d, counts)
    assert list(fig.data[0].y) == [float(m) if m > 0 else None for m in means]  # empty bins: gaps on the log axis
    assert 0 in means  # beyond the window: a gap, not a line diving to zero
    table = {"dense": [(16, 1.0), (32, 1.0)], "none": [(16, float("inf"))]}
    assert len(path_length_figure(table).data[1].x) == 0


def test_explorers_headless_and_interactive():
    static = explorer.dilated_explorer(n=16, heads=2, flag=False)
    assert "Dilated" in static.layout.title.text
    live = explorer.dilated_explorer(n=16, heads=2, flag=True)
    before = live.figure.layout.title.text
    live.controls["n"].value = 20
    assert live.figure.layout.title.text != before
    box = allocation_explorer(w0=4, n=64, heads=2, flag=True)
    box.controls["branches"].value = 2
    assert len(box.figure.data) >= 3
