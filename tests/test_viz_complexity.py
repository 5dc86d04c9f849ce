"""viz.complexity: the cost figure plots exactly the library's numbers."""
import plotly.graph_objects as go
import pytest

from longlab.analysis.dense_cost import dense_cost_table
from longlab.attention.patterns import Dilated, SlidingWindow
from viz.complexity import dense_cost_figure, dense_cost_markdown

NS = [256, 1024, 4096]


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_curves_are_the_library_numbers():
    patterns = {"window 64": SlidingWindow(window=64), "dilated": Dilated((128, 256), (1, 2))}
    fig = dense_cost_figure(NS, head_dim=16, heads=2, patterns=patterns, memory_line=1e6)
    rows = dense_cost_table(NS, head_dim=16, heads=2)
    assert list(_trace(fig, "dense attention FLOPs").y) == [r["flops"] for r in rows]
    assert list(_trace(fig, "N x N score matrix (naive kernel)").y) == [r["score_bytes"] for r in rows]
    assert list(_trace(fig, "KV cache").y) == [r["kv_cache_bytes"] for r in rows]
    for label, pattern in patterns.items():
        assert list(_trace(fig, f"{label} FLOPs").y) == [pattern.flops(n, 16, 2) for n in NS]
    assert list(_trace(fig, "80 GB accelerator").y) == [1e6, 1e6]
    assert fig.layout.xaxis.type == "log" and "tokens" in fig.layout.xaxis.title.text


def test_no_memory_line_and_bad_pattern():
    fig = dense_cost_figure(NS, memory_line=None)
    assert isinstance(fig, go.Figure) and all("accelerator" not in t.name for t in fig.data)
    with pytest.raises(TypeError, match="Pattern"):
        dense_cost_figure(NS, patterns={"oops": 3})


def test_markdown_table():
    text = dense_cost_markdown(dense_cost_table(NS))
    assert text.count("\n") == len(NS) + 1 and "| 4,096 |" in text
