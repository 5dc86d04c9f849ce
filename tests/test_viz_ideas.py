"""Notebook 08 figures render from the kernels' own objects, headless, with labelled axes."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from longlab.attention.paged_kv import PagedKVCache
from viz import ideas_patterns as ip


@pytest.mark.parametrize("make", [
    lambda: ip.linear_weights(torch.randn(8, 4), torch.randn(8, 4)),
    lambda: ip.rerope_positions(24, 6, 0.0),
    lambda: ip.rerope_positions(24, 6, 4.0),
    lambda: ip.pooled_keys(24, 4, 5),
    lambda: ip.floatlike_pattern(32, 1),
    lambda: ip.decode_cache((8, 16), (1, 2), 2, 64),
])
def test_figures_render(make):
    fig = make()
    assert isinstance(fig, go.Figure) and fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text  # axes say what and in which unit
    assert "(" in fig.layout.xaxis.title.text


def test_page_scores_bound_the_true_logits():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(2, 100, 8, generator=g)
    cache = PagedKVCache(2, 8, 10, 100)
    cache.append(keys, keys)
    q = torch.randn(2, 8, generator=g)
    fig = ip.page_scores(cache, q, 3)
    bounds, best = fig.data[0].y, fig.data[1].y
    assert all(b >= t - 1e-5 for b, t in zip(bounds, best))
    assert sum(c != ip.COLORS["muted"] for c in fig.data[0].marker.color) == 4  # K = 3 + the current page


def test_explorers_static_when_headless(monkeypatch):
    monkeypatch.setenv("LONGLAB_HEADLESS", "1")
    assert isinstance(ip.rerope_explorer(), go.Figure)
    assert isinstance(ip.pooled_explorer(), go.Figure)
    assert isinstance(ip.floatlike_explorer(), go.Figure)
    keys = torch.randn(1, 64, 4)
    assert isinstance(ip.paged_explorer(keys, keys, torch.randn(1, 4)), go.Figure)


def test_tour_pattern_explorer_offers_floatlike(monkeypatch):
    from longlab.attention.floatlike import FloatLike
    from viz import pattern_heatmap as ph

    monkeypatch.setenv("LONGLAB_HEADLESS", "1")
    assert ph.make_pattern("floatlike", mantissa=2, causal=True) == FloatLike(2, causal=True)
    fig = ph.pattern_explorer(kind="floatlike", n=32, mantissa=1)
    seen = int(FloatLike(1).multiplicity(4, 32)[0].sum())
    assert f"{seen} of {32 * 32} query-key pairs seen" in fig.layout.title.text


def test_passkey_depth_figure_from_the_records():
    """One loss and one accuracy line per recorded kind, read straight from data/ideas/quality_<kind>.json."""
    import json
    from pathlib import Path

    from viz.ideas_results import passkey_depth_figure

    runs = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "data" / "ideas").glob("quality_*.json")):
        runs.update(json.loads(path.read_text())["runs"])
    recorded = {kind: run["passkey_by_depth"] for kind, run in runs.items() if run.get("passkey_by_depth")}
    assert len(recorded) == 6, "regenerate with python data/ideas/make_ideas_results.py quality"
    fig = passkey_depth_figure(runs)
    panel = {"digit_loss_given_digit": "x", "repeat_loss_given_digit": "x", "digit_loss": "x2", "accuracy": "x3"}
    for kind, rows in recorded.items():
        traces = {t.meta: t for t in fig.data if t.name == kind}
        assert set(traces) == set(panel)
        for field, trace in traces.items():
            assert list(trace.y) == [r[field] for r in rows] and trace.xaxis == panel[field]
            assert list(trace.x) == [r["distance_tokens"] for r in rows]
    assert fig.layout.yaxis.title.text == fig.layout.yaxis2.title.text == "loss on the key's digits (nats/digit)"
    assert "key line to question end (tokens)" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis3.title.text == "exact match (fraction of prompts)"
    one = dict(list(runs.items())[:1])
    assert len(passkey_depth_figure({**one, "untested": {"val_loss": 2.0}}).data) == 4  # runs without a record skipped
    with pytest.raises(ValueError, match="make_ideas_results.py quality"):
        passkey_depth_figure({"untested": {"val_loss": 2.0}})
