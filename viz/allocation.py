"""Figures for notebook 02 (how attention is allocated over distance), drawn from longlab.analysis.

- `structural_figure(patterns, heads, n)`: keys a query sees at distance d (log-binned), log-log, with the
  exponential and power-law fits of the first dilated pattern;
- `effective_figure(results)`: attention weight at distance d from running the kernel;
- `path_length_figure(table)`: layers until every token reaches every other, vs N;
- `allocation_explorer(...)`: sliders for w0, alpha, branches, N around `structural_figure`.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from longlab.analysis.allocation import fit_decay, keys_vs_distance, log_binned
from longlab.attention.patterns import Dense, Dilated, Pattern, SlidingWindow
from viz.theme import COLORS, axis_label, series_color
from viz.widgets import explorer


def _on_log_axis(values) -> list:
    """Values for a log axis: zero (nothing at that distance) becomes a gap, not a line diving to -infinity."""
    return [float(v) if v > 0 else None for v in values]


def structural_figure(patterns: dict[str, Pattern], heads: int, n: int, fit: str | None = None,
                      union: bool = True) -> go.Figure:
    """Mean number of keys at distance d per query (geometric bins), one curve per pattern; fits for `fit`
    (a key of `patterns`, default: the first Dilated one) with their parameters in the legend."""
    fig = go.Figure()
    if fit is None:
        fit = next((name for name, p in patterns.items() if isinstance(p, Dilated)), None)
    for i, (name, pattern) in enumerate(patterns.items()):
        d, counts = keys_vs_distance(pattern, heads, n, union=union)
        centres, means = log_binned(d, counts)
        fig.add_trace(go.Scatter(x=centres, y=_on_log_axis(means), name=name, mode="lines+markers",
                                 line=dict(color=series_color(name, i), width=2),
                                 hovertemplate="d ~ %{x:.0f}: %{y:.3g} keys<extra>" + name + "</extra>"))
        if name == fit:
            for kind, dash in (("exponential", "dash"), ("power", "dot")):
                f = fit_decay(centres, means)[kind]
                grid = np.geomspace(1, centres[means > 0].max(), 60)  # only where the pattern has keys
                fig.add_trace(go.Scatter(x=grid, y=_on_log_axis(f.predict(grid)), name=f.describe(), mode="lines",
                                         line=dict(color=COLORS["accent"], dash=dash, width=1.5)))
    fig.update_layout(title=f"Keys a query can see at each distance (N = {n}, {heads} heads, "
                            f"{'distinct keys' if union else 'counted once per branch'})",
                      xaxis_title=axis_label("distance |i - j|", "tokens"),
                      yaxis_title=axis_label("keys at that distance", "keys per query"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(width=900, height=480)
    return fig


def effective_figure(results: dict, title: str = "Attention weight vs distance (kernel on random inputs)"):
    """results: name -> EffectiveAllocation. The share of a query's attention weight that lands at distance d
    (averaged over queries, then over the distances of each geometric bin), log-log; empty bins are gaps."""
    fig = go.Figure()
    for i, (name, res) in enumerate(results.items()):
        centres, means = log_binned(res.distance, res.weight)
        fig.add_trace(go.Scatter(x=centres, y=_on_log_axis(means), name=f"{name} (self: {res.weight[0]:.3g})",
                                 mode="lines+markers", line=dict(color=series_color(name, i), width=2)))
    fig.update_layout(title=title, xaxis_title=axis_label("distance |i - j|", "tokens"),
                      yaxis_title=axis_label("attention at distance d", "share of the query's weight"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(width=900, height=460)
    return fig


def path_length_figure(table: dict[str, list[tuple[int, float]]]) -> go.Figure:
    """table: name -> [(N, layers)]; infinite path lengths (disconnected) are left out."""
    fig = go.Figure()
    for i, (name, points) in enumerate(table.items()):
        pts = [(n, layers) for n, layers in points if np.isfinite(layers)]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=name, mode="lines+markers",
                                 line=dict(color=series_color(name, i), width=2)))
    fig.update_layout(title="Token-dependency path length: layers until every token can reach every other",
                      xaxis_title=axis_label("sequence length N", "tokens"),
                      yaxis_title=axis_label("path length", "layers"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    fig.update_layout(width=850, height=450)
    return fig


def allocation_explorer(w0: int = 16, alpha: int = 2, branches: int = 4, n: int = 512, heads: int = 4,
                        window: int | None = None, causal: bool = False, flag: bool | None = None):
    """Sliders for w0, alpha, branches, N around `structural_figure` (dense and a sliding window of the same
    first-branch width for comparison); the plain figure for the given values when headless."""
    import ipywidgets as w

    controls = {
        "w0": w.IntSlider(value=w0, min=2, max=64, description="w0"),
        "alpha": w.IntSlider(value=alpha, min=2, max=4, description="alpha"),
        "branches": w.IntSlider(value=branches, min=1, max=5, description="branches"),
        "n": w.IntSlider(value=n, min=64, max=1024, step=64, description="N"),
    }

    def draw(w0, alpha, branches, n):
        patterns = {
            "dense": Dense(causal),
            f"sliding window {window or w0}": SlidingWindow(window or w0, causal),
            f"dilated w0={w0}, alpha={alpha}, {branches} branches": Dilated.geometric(w0, alpha, branches, causal),
        }
        return structural_figure(patterns, heads, n)

    return explorer(draw, controls, flag=flag)
