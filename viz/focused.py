"""Focused Transformer figures for notebook 04: the crossbatch layout (which lanes' keys each lane sees), r_d
curves, accuracy against length with and without memory, and what the layer retrieved for one query, as text.

Figures read longlab objects only: `longlab.memory.focused.crossbatch.CrossbatchLayout`, {d: r_d} dicts from
`measure_distraction` (or the recorded JSON), accuracy rows, and `LayerReads` retrievals.
"""
from __future__ import annotations

import html
import random

import plotly.graph_objects as go
import torch

from longlab.memory.focused.crossbatch import CrossbatchLayout, make_layout

from .theme import COLORS, axis_label, method_color, series_color
from .widgets import explorer


def crossbatch_layout_figure(layout: CrossbatchLayout) -> go.Figure:
    """Rows: the current window of lane i (its memory-layer queries); columns: the previous window of lane j.
    Cell: the positive (j = i, same document), a negative (another document), or not seen."""
    b = layout.lanes
    z = [[0.0] * b for _ in range(b)]
    text = [["not seen"] * b for _ in range(b)]
    for i in range(b):
        for rank, j in enumerate(layout.sources[i].tolist()):
            if layout.positive is not None and not bool(layout.positive[i]):
                continue
            z[i][j] = 1.0 if rank == 0 else 0.5
            text[i][j] = "positive (own document)" if rank == 0 else "negative (other document)"
    docs = layout.docs.tolist() if layout.docs is not None else list(range(b))
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"lane {j}" for j in range(b)], y=[f"lane {i}" for i in range(b)], text=text, zmin=0, zmax=1,
        showscale=False, xgap=2, ygap=2,
        colorscale=[[0, COLORS["empty"]], [0.5, "#f3b38a"], [1, method_color("focused")]],
        customdata=[[docs[j] for j in range(b)] for _ in range(b)],
        hovertemplate="current window of %{y} sees previous window of %{x} (document %{customdata}): "
                      "%{text}<extra></extra>"))
    fig.update_layout(
        title=f"Crossbatch, {b} lanes, d = {layout.d}: each lane's queries see its own previous window<br>"
              f"(dark, the positive) and {layout.d - 1} other lanes' (light, negatives)",
        xaxis_title="keys of the previous window of lane j", yaxis_title="queries of the current window of lane i",
        yaxis_autorange="reversed", height=220 + 30 * b, margin=dict(t=90))
    return fig


def crossbatch_layout_explorer(lanes: int = 8, d: int = 4, seed: int = 0, flag: bool | None = None):
    """crossbatch_layout_figure with a slider for d (the layout is drawn with a seeded generator)."""
    import ipywidgets as w

    controls = {"d": w.IntSlider(value=d, min=1, max=lanes, description="d (contexts)"),
                "seed": w.IntSlider(value=seed, min=0, max=20, description="seed")}

    def make(d, seed):
        return crossbatch_layout_figure(make_layout(lanes, d, random.Random(seed), docs=list(range(lanes))))

    return explorer(make, controls, flag=flag)


def distraction_figure(curves: dict, title: str | None = None) -> go.Figure:
    """r_d against d for each model ({name: {d: r_d}}), with the 1/d line of a model that cannot tell its own
    document from the others."""
    fig = go.Figure()
    all_d = sorted({int(d) for c in curves.values() for d in c})
    fig.add_trace(go.Scatter(x=all_d, y=[1 / d for d in all_d], mode="lines", name="1/d (no focus)",
                             line=dict(color=COLORS["muted"], dash="dash")))
    sides = ("top right", "bottom left", "bottom right", "top left")  # curves that coincide keep apart labels
    for i, (name, curve) in enumerate(curves.items()):
        ds = sorted(int(d) for d in curve)
        values = [curve[d] if d in curve else curve[str(d)] for d in ds]
        fig.add_trace(go.Scatter(x=ds, y=values, mode="lines+markers+text", name=name,
                                 text=[f"{v:.2f}" for v in values], textposition=sides[i % len(sides)],
                                 cliponaxis=False,  # the label of r_1 = 1 sits above the plot area
                                 line=dict(color=series_color(name, i), width=3), marker=dict(size=9)))
    fig.update_layout(title=title or "distraction: attention mass on the positive context / mass on all d contexts",
                      xaxis=dict(type="log", tickvals=all_d, title=axis_label("d, contexts seen", "count")),
                      yaxis=dict(range=[0, 1.05], title=axis_label("r_d", "fraction")))
    return fig


def accuracy_figure(series: dict, title: str, x_title: str) -> go.Figure:
    """Accuracy against a length: series {name: [(x, accuracy), ...]}; x on a log axis."""
    fig = go.Figure()
    for i, (name, points) in enumerate(series.items()):
        xs, ys = zip(*points) if points else ((), ())
        fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines+markers", name=name,
                                 line=dict(color=series_color(name, i), width=3), marker=dict(size=9)))
    fig.update_layout(title=title, xaxis=dict(type="log", title=x_title),
                      yaxis=dict(range=[-0.03, 1.03], title=axis_label("exact-match accuracy", "fraction")))
    return fig


def value_loss_race_figure(histories: dict, chance: float, title: str) -> go.Figure:
    """Value loss (each point the mean of the last 25 steps) against training step for models trained on the
    same batches: histories {name: [{"step", "value_loss"}, ...]}; the loss of guessing a value letter uniformly
    as a grey dashed line. The first model solid, the others dotted."""
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        fig.add_trace(go.Scatter(x=[r["step"] for r in history], y=[r["value_loss"] for r in history], name=name,
                                 mode="lines", line=dict(color=series_color(name, i), width=3,
                                                         dash="solid" if i == 0 else "dot")))
    fig.add_hline(y=chance, line=dict(color=COLORS["muted"], dash="dash"),
                  annotation_text=f"chance {chance:.3f}", annotation_position="bottom right")
    return fig.update_layout(title=title, xaxis_title=axis_label("training step", "updates"),
                             yaxis_title=axis_label("value loss", "nats/byte"))


def _text(tokens: torch.Tensor, lo: int, hi: int) -> str:
    raw = bytes(tokens[max(0, lo) : hi].tolist()).decode("ascii", errors="replace")
    return html.escape(raw).replace("\n", "⏎").replace("|", "&#124;")


def retrieved_rows(retrieval, tokens: torch.Tensor, query: int, head: int, top: int = 8, before: int = 6,
                   after: int = 3) -> list[dict]:
    """Rows for a markdown table: the `top` memory entries with the largest weights for query position `query`
    and `head` of a Retrieval (positions index `tokens`, the text read into memory): rank, position, weight
    (share of the one softmax), score (scaled q.k) and the bytes around the entry, the entry itself in ⟦ ⟧."""
    weights = retrieval.weights[head, query]
    order = torch.argsort(weights, descending=True)[:top]
    rows = []
    for rank, j in enumerate(order.tolist(), 1):
        p = int(retrieval.positions[head, query, j])
        rows.append({"rank": rank, "position": p, "weight": round(float(weights[j]), 4),
                     "score": round(float(retrieval.scores[head, query, j]), 3),
                     "text": f"`{_text(tokens, p - before, p)}⟦{_text(tokens, p, p + 1)}⟧"
                             f"{_text(tokens, p + 1, p + 1 + after)}`"})
    return rows


def head_mass_figure(mass: torch.Tensor, title: str) -> go.Figure:
    """Attention mass per memory-layer head (mass (H,) fractions), e.g. on the passkey line."""
    mass = mass.detach().float().cpu()
    fig = go.Figure(go.Bar(x=[f"head {h}" for h in range(mass.numel())], y=mass.tolist(),
                           text=[f"{m:.3f}" for m in mass.tolist()], textposition="outside",
                           marker_color=method_color("focused")))
    fig.update_layout(title=title, xaxis_title="memory-layer head", yaxis=dict(range=[0, 1.05],
                      title=axis_label("attention mass", "fraction")), showlegend=False)
    return fig
