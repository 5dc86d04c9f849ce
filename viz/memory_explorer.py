"""kNN memory figures for notebook 03: what a memorizing layer retrieves, its gates, loss vs memory size,
where memory helped along the text, and exact vs approximate search recall.

Figures read longlab objects only: `longlab.memory.retrievals.Retrievals`, `longlab.memory.memory_eval.MemoryCurve`
and `MemorySweep`, and the rows of `longlab.memory.recall.compare_search`.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from longlab.tasks import decode
from viz.theme import COLORS, axis_label, branch_color, label_headroom, method_color
from viz.widgets import explorer


def _snippet(tokens: torch.Tensor, at: int, before: int = 24, after: int = 8) -> str:
    text = decode(tokens[max(0, at - before) : at + after])
    return text.replace("\n", "⏎").replace("<", "&lt;")


def retrieval_figure(ret, query: int) -> go.Figure:
    """Top: timeline over the document, one row per head, a marker at each retrieved past position (size and
    colour = softmax weight), the query marked. Bottom: the retrieved entries' cosine scores by rank."""
    got = ret.for_query(query)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.6, 0.4], vertical_spacing=0.22,
                        subplot_titles=("retrieved positions (timeline)", "scores of the top-k, by rank"))
    n = ret.tokens.numel()
    for h in range(ret.heads):
        keep = got["positions"][h] >= 0
        pos, w = got["positions"][h][keep], got["weights"][h][keep]
        hover = [f"head {h}<br>position {int(p)} (doc {int(d)})<br>weight {float(x):.3f}<br>"
                 f"score {float(s):.3f}<br>…{_snippet(ret.tokens, int(p))}…"
                 for p, x, s, d in zip(pos, w, got["scores"][h][keep], got["doc_ids"][h][keep])]
        fig.add_trace(go.Scatter(x=pos.tolist(), y=[f"head {h}"] * len(pos), mode="markers", name=f"head {h}",
                                 legendgroup=f"h{h}", hovertext=hover, hoverinfo="text",
                                 marker=dict(size=(6 + 30 * w).tolist(), color=branch_color(h), opacity=0.7,
                                             line=dict(width=0))), row=1, col=1)
        scores = got["scores"][h][keep]
        fig.add_trace(go.Bar(x=list(range(1, len(scores) + 1)), y=scores.tolist(), name=f"head {h}",
                             legendgroup=f"h{h}", showlegend=False, marker_color=branch_color(h)), row=2, col=1)
    fig.add_vline(x=query, line=dict(color=COLORS["accent"], dash="dash"), row=1, col=1)
    fig.update_xaxes(range=[-0.01 * n, 1.01 * n], title_text=axis_label("position in document", "bytes"), row=1, col=1)
    fig.update_xaxes(title_text=axis_label("rank among retrieved", "1 = best score"), row=2, col=1)
    fig.update_yaxes(title_text=axis_label("cosine score", "-1..1"), row=2, col=1)
    fig.update_yaxes(title_text="head", row=1, col=1)
    empty = "" if (got["positions"] >= 0).any() else " (memory still empty: first window)"
    title = f"query byte {query}: …{_snippet(ret.tokens, query + 1, 40, 0)}▮{empty}"
    fig.update_layout(barmode="group", height=620)
    return fig.update_layout(title=title)


def retrieval_explorer(ret, query: int | None = None, flag: bool | None = None):
    """Slider over the query byte; interactive -> widget, headless -> the figure for `query`."""
    import ipywidgets as w

    n = ret.tokens.numel()
    start = n - 1 if query is None else query
    slider = w.IntSlider(value=start, min=0, max=n - 1, step=1, description="query byte",
                         layout=w.Layout(width="600px"))
    return explorer(lambda query: retrieval_figure(ret, query), {"query": slider}, flag=flag)


def gates_figure(gates: torch.Tensor) -> go.Figure:
    """Per-head gate g = sigmoid(b): share of the memory attention in the head's output."""
    gates = gates.detach().float().cpu()
    values = [g if math.isfinite(g) else None for g in gates.tolist()]  # NaN = a layer without a gate
    fig = go.Figure(go.Bar(x=[f"head {h}" for h in range(gates.numel())], y=values,
                           marker_color=[branch_color(h) for h in range(gates.numel())],
                           text=["no gate" if g is None else f"{g:.2f}" for g in values], textposition="outside"))
    fig.update_yaxes(range=[0, 1])
    return fig.update_layout(title="memory gate per head: out = g·memory + (1 − g)·local", xaxis_title="head",
                             yaxis_title=axis_label("gate g = sigmoid(b)", "fraction"), showlegend=False)


def loss_vs_memory_figure(curve, skip: int = 0) -> go.Figure:
    """Mean loss (nats/byte) against memory size (tokens per head); memory 0 drawn at the left edge."""
    losses = curve.mean_losses(skip)
    sizes = curve.memory_sizes
    labels = [("none" if s == 0 else f"{s:,}") for s in sizes]
    fig = go.Figure(go.Scatter(x=labels, y=losses, mode="lines+markers+text", text=[f"{l:.4f}" for l in losses],
                               textposition="top center", line=dict(color=method_color("memorizing"), width=3),
                               marker=dict(size=9)))
    return fig.update_layout(title=f"loss vs kNN memory size ({curve.token_losses.shape[1]:,} bytes)",
                             xaxis_title=axis_label("memory size", "tokens per head"),
                             yaxis=dict(title=axis_label("loss", "nats/byte"), range=label_headroom(losses)),
                             showlegend=False)


def memory_helped_figure(curve, size_index: int = -1, smooth: int = 64) -> go.Figure:
    """Loss without memory minus loss with memory_sizes[size_index], along the text (moving average of
    `smooth` bytes): above zero, memory helped. Hover shows the text."""
    diff = curve.helped(size_index).float()
    kernel = torch.ones(1, 1, smooth) / smooth
    smoothed = torch.nn.functional.conv1d(diff[None, None], kernel, padding=smooth // 2)[0, 0, : diff.numel()]
    x = list(range(diff.numel()))
    step = max(1, diff.numel() // 4000)  # keep the figure light
    hover = [f"byte {i}: {float(diff[i]):+.3f} nats<br>…{_snippet(curve.tokens, i + 1, 30, 0)}▮"
             for i in x[::step]]
    size = curve.memory_sizes[size_index]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x[::step], y=diff[::step].tolist(), mode="markers", name="per byte",
                             marker=dict(size=3, color=COLORS["muted"], opacity=0.35), hovertext=hover,
                             hoverinfo="text"))
    fig.add_trace(go.Scatter(x=x, y=smoothed.tolist(), mode="lines", name=f"moving average ({smooth} bytes)",
                             line=dict(color=method_color("memorizing"), width=2)))
    fig.add_hline(y=0, line=dict(color=COLORS["ink"], width=1))
    spread = float(smoothed.abs().max()) * 4 + 1e-3
    fig.update_yaxes(range=[-spread, spread])
    return fig.update_layout(title=f"where memory helped: loss(no memory) − loss(memory {size:,})",
                             xaxis_title=axis_label("position in document", "bytes"),
                             yaxis_title=axis_label("loss difference", "nats/byte"))


def recall_figure(rows: list[dict]) -> go.Figure:
    """Recall@k and search time of exact vs approximate indexes (rows from compare_search)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("recall of the exact top-k", "search time"))
    names = [r["index"] for r in rows]
    colors = [COLORS["good"] if r["recall"] >= 0.999 else COLORS["accent"] for r in rows]
    fig.add_trace(go.Bar(x=names, y=[r["recall"] for r in rows], marker_color=colors,
                         text=[f"{r['recall']:.3f}" for r in rows], textposition="outside"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=[r["search_s"] * 1e3 for r in rows], marker_color=COLORS["muted"]), row=1, col=2)
    fig.update_yaxes(range=[0, 1.1], title_text=axis_label("recall@k", "fraction"), row=1, col=1)
    fig.update_yaxes(title_text=axis_label("search time", "ms"), row=1, col=2)
    fig.update_xaxes(title_text="index")
    return fig.update_layout(title="exact vs approximate kNN search", showlegend=False)


def loss_vs_memory_sweep_figure(sweep, title: str | None = None) -> go.Figure:
    """Loss against memory size for each document of a `MemorySweep` (thin lines) and their mean (thick)."""
    labels = [("none" if s == 0 else f"{s:,}") for s in sweep.memory_sizes]
    fig = go.Figure()
    for name, row in zip(sweep.names, sweep.losses.tolist()):
        fig.add_trace(go.Scatter(x=labels, y=row, mode="lines+markers", name=name, opacity=0.45,
                                 line=dict(width=1), marker=dict(size=4)))
    mean = sweep.mean()
    fig.add_trace(go.Scatter(x=labels, y=mean, mode="lines+markers+text", name="mean over documents",
                             text=[f"{l:.4f}" for l in mean], textposition="top center",
                             line=dict(color=method_color("memorizing"), width=4), marker=dict(size=10)))
    docs = f"{len(sweep.names)} document{'s' if len(sweep.names) != 1 else ''}"
    title = title or f"loss vs kNN memory size ({docs}, {sum(sweep.bytes_per_doc):,} bytes)"
    return fig.update_layout(title=title, xaxis_title=axis_label("memory size", "tokens per head"),
                             yaxis=dict(title=axis_label("loss", "nats/byte"),
                                        range=label_headroom(sweep.losses.flatten().tolist())))
