"""RETRO figures: the causal shift grid, neighbours as text, loss with/without retrieval, k sweep, gain vs overlap.

Every figure reads longlab objects (`chunk_of_token`, `RetroWindows`, the recorded claims) and never
re-derives the shift itself.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go
import torch

from longlab.memory.retro.cca import chunk_of_token

from .theme import COLORS, axis_label, method_color
from .widgets import explorer


def causal_shift_figure(n: int = 32, m: int = 4) -> go.Figure:
    """Tokens (x) by chunks (y): cell (i, u) is filled when token i reads chunk u's neighbours, i.e.
    u = floor((i + 1) / m) - 1; outlined cells mark the chunk each token belongs to (floor(i / m))."""
    n = n - n % m
    chunks = n // m
    u = chunk_of_token(n, m)
    z = [[1.0 if u[i] == c else (0.35 if i // m == c else 0.0) for i in range(n)] for c in range(chunks)]
    text = [[("reads" if u[i] == c else ("in chunk" if i // m == c else "")) for i in range(n)] for c in range(chunks)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n)), y=[f"chunk {c}" for c in range(chunks)], text=text, zmin=0, zmax=1, showscale=False,
        colorscale=[[0, COLORS["empty"]], [0.35, "#c5d9ee"], [1, method_color("retro")]], xgap=1, ygap=1,
        hovertemplate="token %{x}, %{y}: %{text}<extra></extra>"))
    silent = int((u < 0).sum())
    fig.update_layout(
        title=f"Chunked cross-attention, m = {m}: token i reads the neighbours of chunk floor((i+1)/m) - 1 (dark)"
              f"<br>light: the chunk a token belongs to; tokens 0..{silent - 1} read none",
        xaxis_title=axis_label("token position i", "bytes"), yaxis_title="neighbours of chunk u",
        yaxis_autorange="reversed", height=180 + 28 * chunks, margin=dict(t=90))
    return fig


def causal_shift_explorer(n: int = 32, m: int = 4, flag: bool | None = None):
    """causal_shift_figure with sliders for the chunk size m and the sequence length."""
    import ipywidgets as w

    controls = {"m": w.IntSlider(value=m, min=1, max=16, description="m (bytes)"),
                "n": w.IntSlider(value=n, min=8, max=96, step=8, description="N (bytes)")}
    return explorer(lambda m, n: causal_shift_figure(n, m), controls, flag=flag)


def _show(data: bytes) -> str:
    return html.escape(data.decode("utf-8", "replace")).replace("\n", "⏎").replace("|", "&#124;")


def neighbours_table(windows, documents: list[str], window: int, chunk: int, k: int | None = None) -> str:
    """Markdown: the query chunk, the bytes its readers predict, and its k neighbours [chunk | continuation]
    with cosine score, source file and offset."""
    m = windows.neighbours.shape[-1] // 2
    k = windows.max_k if k is None else k
    t = windows.tokens[window]
    query, predicted = bytes(t[chunk * m:(chunk + 1) * m].tolist()), bytes(t[(chunk + 1) * m:(chunk + 2) * m].tolist())
    lines = [f"query chunk u = {chunk}: `{_show(query)}`, then its readers predict `{_show(predicted)}`", "",
             "| rank | score | file @ offset | neighbour chunk N | continuation F |", "|---|---|---|---|---|"]
    for j in range(k):
        nb = bytes(windows.neighbours[window, chunk, j, : windows.lengths[window, chunk, j]].tolist())
        doc = documents[windows.nb_doc_ids[window, chunk, j]]
        lines.append(f"| {j} | {windows.scores[window, chunk, j]:.3f} | {doc} @ {windows.nb_offsets[window, chunk, j]} "
                     f"| `{_show(nb[:m])}` | `{_show(nb[m:])}` |")
    return "\n".join(lines)


def loss_by_k_figure(loss_by_k: dict, leak: float | None = None, at_k: int = 2, control: float | None = None,
                     title: str = "") -> go.Figure:
    """Held-out loss against the number of neighbours k (k = 0 is the frozen model); optional points at k = at_k:
    the leakage run (own file allowed) and the control (every chunk reads another chunk's neighbours)."""
    ks = sorted(int(k) for k in loss_by_k)
    fig = go.Figure(go.Scatter(x=ks, y=[loss_by_k[str(k)] if str(k) in loss_by_k else loss_by_k[k] for k in ks],
                               mode="lines+markers", name="other files only", line_color=method_color("retro")))
    for value, name, symbol, color in ((leak, "own file allowed (leakage)", "x", COLORS["bad"]),
                                       (control, "control: shuffled neighbours", "diamond", COLORS["muted"])):
        if value is not None:
            fig.add_trace(go.Scatter(x=[at_k], y=[value], mode="markers", marker_symbol=symbol, marker_size=12,
                                     marker_color=color, name=name))
    fig.update_layout(title=title or "Held-out loss vs neighbours per chunk (k = 0: the frozen TinyLM)",
                      xaxis_title=axis_label("neighbours per chunk k"), yaxis_title=axis_label("loss", "nats/byte"),
                      xaxis_tickvals=ks)
    return fig


def loss_along_window_figure(without: torch.Tensor, with_: torch.Tensor, m: int, title: str = "") -> go.Figure:
    """Per-position loss (mean over windows) with and without retrieval; dotted lines at chunk ends."""
    x = list(range(without.shape[-1]))
    fig = go.Figure([
        go.Scatter(x=x, y=without.mean(0).tolist(), name="frozen (k = 0)", line_color=COLORS["muted"]),
        go.Scatter(x=x, y=with_.mean(0).tolist(), name="with retrieval", line_color=method_color("retro"))])
    for end in range(m - 1, len(x), m):
        fig.add_vline(x=end, line_dash="dot", line_color=COLORS["grid"])
    fig.update_layout(title=title or "Loss by position: retrieval can only help from token m - 1 on",
                      xaxis_title=axis_label("position in window", "bytes"),
                      yaxis_title=axis_label("mean loss", "nats/byte"))
    return fig


def gain_vs_overlap_figure(gains: list[float], overlaps: list[int], bins: list[dict]) -> go.Figure:
    """Per-chunk loss gain (frozen - retrieval) against the longest common substring between the neighbours
    and the predicted bytes; bars give the mean gain per overlap bin."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.12,
                        subplot_titles=("every chunk", "mean per overlap bin"))
    jitter = torch.rand(len(overlaps), generator=torch.Generator().manual_seed(0)) * 0.5 - 0.25
    fig.add_trace(go.Scatter(x=(torch.tensor(overlaps, dtype=torch.float) + jitter).tolist(), y=gains, mode="markers",
                             marker={"size": 4, "opacity": 0.5, "color": method_color("retro")}, showlegend=False),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=[b["overlap"] for b in bins], y=[b["mean_gain"] for b in bins],
                         # counts and means, not shares of the total: the total gain can be near 0 or negative
                         text=[f"{b['mean_gain']:+.2f}<br>{b['chunks']} chunks" for b in bins], textposition="outside",
                         cliponaxis=False, marker_color=method_color("retro"), showlegend=False), row=1, col=2)
    fig.add_hline(y=0, line_color=COLORS["muted"], row=1, col=1)
    fig.update_xaxes(title_text=axis_label("overlap: longest common substring", "bytes"), row=1, col=1)
    fig.update_xaxes(title_text=axis_label("overlap bin", "bytes"), row=1, col=2)
    fig.update_yaxes(title_text=axis_label("loss gain per byte", "nats"), row=1, col=1)
    fig.update_yaxes(title_text=axis_label("mean gain per byte", "nats"), row=1, col=2)
    fig.update_layout(title="Where retrieval helps: gain vs how much of the future the neighbours contain")
    return fig
