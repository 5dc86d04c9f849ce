"""LongMem figures for notebook 05: the data flow drawn from the model object, retrieved chunks as text, the
training curve, loss against memory size next to the frozen backbone, and the staleness of cached keys.

Figures read longlab objects only: a `longlab.memory.longmem.model.LongMem` (its SideNet spans, init layers, memory
source and reader), `longlab.memory.retrievals.Retrievals`, and the claims JSON written by `longlab train-sidenet`.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go
import torch

from viz.theme import COLORS, axis_label, branch_color, method_color
from viz.widgets import explorer

FROZEN, SIDE, BANK = COLORS["muted"], method_color("longmem"), branch_color(2)


def _node(fig, x, y, text, color, width=0.34, height=0.34):
    fig.add_shape(type="rect", x0=x - width, x1=x + width, y0=y - height, y1=y + height, line=dict(color=color),
                  fillcolor=COLORS["background"])
    fig.add_annotation(x=x, y=y, text=text, showarrow=False, font=dict(color=color))


def _arrow(fig, start, end, color, text="", dash=False):
    fig.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=2, arrowwidth=1.5, arrowcolor=color, text="")
    if dash:  # plotly arrows cannot be dashed: draw a dashed line under the arrow head
        fig.add_shape(type="line", x0=start[0], y0=start[1], x1=end[0], y1=end[1], line=dict(color=color, dash="dot"))
    if text:
        fig.add_annotation(x=(start[0] + end[0]) / 2, y=(start[1] + end[1]) / 2, text=text, showarrow=False,
                           font=dict(size=11, color=color), bgcolor=COLORS["background"])


def dataflow_figure(model) -> go.Figure:
    """Backbone (left, frozen) and SideNet (right, trained) as the model object builds them: which backbone hidden
    states each SideNet layer's residual H_hi - H_lo reads, which backbone layer it was copied from (dotted),
    which backbone layer writes the memory bank and which SideNet layer reads it."""
    spans, init_from = model.side.spans, model.side.init_from
    cfg, n = model.config, model.backbone.config.n_layers
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 4.2], y=[-1.2, n + 1.2], mode="markers", marker=dict(opacity=0),
                             hoverinfo="skip", showlegend=False))
    _node(fig, 0, -0.8, "bytes → embed", FROZEN, width=0.6)
    for layer in range(n):
        _node(fig, 0, layer + 0.5, f"backbone layer {layer}", FROZEN, width=0.6)
        _arrow(fig, (0, layer), (0, layer + 0.16), FROZEN)
    for level in range(n + 1):
        fig.add_annotation(x=-0.9, y=level, text=f"H<sub>{level}</sub>", showarrow=False, font=dict(color=FROZEN))
    _node(fig, 2.1, n + 0.9, "frozen norm + LM head → logits", FROZEN, width=1.0)
    side_y = [(lo + hi) / 2 for lo, hi in spans]
    for i, ((lo, hi), y) in enumerate(zip(spans, side_y)):
        reads_memory = i == cfg.memory_layer
        _node(fig, 3.4, y, f"SideNet layer {i}" + (" + memory" if reads_memory else ""), SIDE, width=0.7)
        _arrow(fig, (0.6, hi), (2.7, y + 0.1), SIDE, f"+H<sub>{hi}</sub> − H<sub>{lo}</sub>")
        _arrow(fig, (0.6, init_from[i] + 0.5), (2.7, y - 0.1), FROZEN, "", dash=True)
        if i:
            _arrow(fig, (3.4, side_y[i - 1] + 0.34), (3.4, y - 0.34), SIDE)
    _arrow(fig, (0.6, -0.8), (2.7, side_y[0] - 0.3), SIDE, "H<sub>0</sub>")
    _arrow(fig, (3.4, side_y[-1] + 0.34), (2.6, n + 0.6), SIDE)
    bank_y = cfg.source_layer + 0.5
    _node(fig, 1.65, bank_y - 0.9, f"ChunkBank per lane: {cfg.memory_size:,} tokens,<br>chunks of {cfg.chunk_size}, "
          f"top {cfg.topk} tokens", BANK, width=0.75, height=0.32)
    _arrow(fig, (0.6, bank_y - 0.1), (1.2, bank_y - 0.6), BANK, "k, v (no grad)")
    _arrow(fig, (2.4, bank_y - 0.9), (2.7, side_y[cfg.memory_layer] - 0.2), BANK, "read")
    fig.update_xaxes(visible=False, range=[-1.3, 4.3])
    fig.update_yaxes(visible=False, range=[-1.4, n + 1.4])
    return fig.update_layout(title=f"LongMem data flow: {n} frozen backbone layers, {len(spans)} SideNet layers "
                                   f"(r = {cfg.reduction}); dotted grey: copied from",
                             height=200 + 90 * n, showlegend=False)


def _text(tokens: torch.Tensor, lo: int, hi: int, spaces: bool = False) -> str:
    """Bytes lo..hi as text: newlines as ⏎ and, with spaces=True, spaces as ␣ (a chunk of blanks stays visible)."""
    data = html.escape(bytes(tokens[max(lo, 0): hi].tolist()).decode("utf-8", "replace")).replace("\n", "⏎")
    return data.replace(" ", "␣") if spaces else data


def retrieved_chunks(ret, query: int, head: int, chunk_size: int) -> list[dict]:
    """One row per chunk query byte `query` retrieved in head `head` (Retrievals of a LongMem model, whose entries
    come grouped chunk by chunk): rank, document offset, the chunk's bytes, its score q . mean(k) and the attention
    weight its tokens got together."""
    found = ret.for_query(query)
    positions, scores, weights = found["positions"][head], found["scores"][head], found["weights"][head]
    rows = []
    for rank, start in enumerate(range(0, positions.numel(), chunk_size)):
        first = int(positions[start])
        if first < 0:
            break
        rows.append({"rank": rank + 1, "bytes": f"{first}-{first + chunk_size - 1}",
                     "chunk": _text(ret.tokens, first, first + chunk_size, spaces=True),
                     "context before it": _text(ret.tokens, first - 16, first),
                     "score q·mean(k)": float(scores[start]),
                     "weight": float(weights[start: start + chunk_size].sum())})
    return rows


def text_before(ret, query: int, width: int = 40) -> str:
    """The `width` bytes up to and including query byte `query`, as text (⏎ for newlines)."""
    return _text(ret.tokens, query - width + 1, query + 1)


def letter_query(ret, chunk_size: int) -> tuple[int, int]:
    """(query byte, head) whose best chunk holds a letter and gets the largest summed attention weight among such
    queries: a rule fixed in advance that skips chunks of pure indentation, common in code and uninformative."""
    weight = torch.nan_to_num(ret.weights[..., :chunk_size].sum(-1), nan=-1.0)  # (H, T) weight of the top chunk
    first = ret.positions[..., 0]  # (H, T) first byte of the top chunk, -1: nothing retrieved
    letters = torch.tensor([chr(b).isalpha() for b in range(256)])
    padded = torch.cat([ret.tokens, ret.tokens.new_zeros(chunk_size)])
    spans = padded[first.clamp_min(0)[..., None] + torch.arange(chunk_size)]  # (H, T, csz) bytes of the top chunk
    ok = (first >= 0) & letters[spans.long()].any(-1)
    if not ok.any():
        raise ValueError("no query's best chunk holds a letter; record more text")
    head, query = divmod(int(weight.masked_fill(~ok, -1.0).flatten().argmax()), weight.shape[1])
    return query, head


def retrieved_chunks_figure(ret, query: int, head: int, chunk_size: int) -> go.Figure:
    """Table: the chunks retrieved for one query byte and head, best first."""
    rows = retrieved_chunks(ret, query, head, chunk_size)
    cols = ["rank", "bytes", "context before it", "chunk", "score q·mean(k)", "weight"]
    values = [[(f"{r[c]:.3f}" if isinstance(r[c], float) else r[c]) for r in rows] for c in cols]
    before = text_before(ret, query)
    fig = go.Figure(go.Table(header=dict(values=cols, fill_color=COLORS["empty"]),
                             cells=dict(values=values, align="left"), columnwidth=[0.5, 1, 2.2, 1, 1, 0.8]))
    title = f"byte {query}, head {head}: …{before}" + ("" if rows else " (memory still empty: nothing retrieved)")
    return fig.update_layout(title=title, height=140 + 26 * max(len(rows), 1))


def retrieved_chunks_explorer(ret, chunk_size: int, query: int | None = None, head: int = 0, flag=None):
    """retrieved_chunks_figure with a query-byte slider and a head dropdown (static figure when headless)."""
    import ipywidgets as w

    n = ret.tokens.numel()
    controls = {"query": w.IntSlider(value=n - 1 if query is None else query, min=0, max=n - 1,
                                     description="query byte"),
                "head": w.Dropdown(options=list(range(ret.heads)), value=head, description="head")}
    return explorer(lambda query, head: retrieved_chunks_figure(ret, query, head, chunk_size), controls, flag=flag)


def training_curve_figure(history: list[dict], backbone_val: float | None = None) -> go.Figure:
    """SideNet training: mean of the last 20 training losses and the held-out loss against step; the frozen
    backbone's held-out loss on the same windows as a dashed line."""
    rows = [r for r in history if "train_loss" in r]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r["train_loss"] for r in rows], name="train (streams)",
                             mode="lines+markers", line=dict(color=SIDE)))
    fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r.get("val_loss") for r in rows], name="held-out",
                             mode="lines+markers", line=dict(color=SIDE, dash="dot")))
    if backbone_val is not None:
        fig.add_hline(y=backbone_val, line=dict(color=FROZEN, dash="dash"),
                      annotation_text=f"frozen backbone, held-out {backbone_val:.3f}")
    return fig.update_layout(title="SideNet training (backbone frozen)", xaxis_title=axis_label("step", "updates"),
                             yaxis_title=axis_label("loss", "nats/byte"))


def loss_vs_memory_figure(evaluation: dict, title: str | None = None) -> go.Figure:
    """Mean held-out loss of SideNet + memory against memory size, the frozen backbone alone as a dashed line
    (`evaluation`: the "eval" block of the claims, or longmem_sweep's result)."""
    sizes, losses = evaluation["memory_sizes"], evaluation["mean_loss"]
    labels = ["none" if s == 0 else f"{s:,}" for s in sizes]
    fig = go.Figure(go.Scatter(x=labels, y=losses, mode="lines+markers+text", text=[f"{v:.4f}" for v in losses],
                               textposition="top center", line=dict(color=SIDE, width=3), name="SideNet + memory"))
    fig.add_hline(y=evaluation["mean_backbone"], line=dict(color=FROZEN, dash="dash"),
                  annotation_text=f"frozen backbone alone {evaluation['mean_backbone']:.4f}")
    docs = len(evaluation["documents"])
    return fig.update_layout(title=title or f"loss vs memory size, mean over {docs} held-out file(s)",
                             xaxis_title=axis_label("memory size", "tokens per lane"),
                             yaxis_title=axis_label("loss", "nats/byte"), showlegend=False)


def staleness_figure(staleness: dict) -> go.Figure:
    """Mean cosine drift 1 - cos(cached key, key the current weights write) of the probe text against training
    step: the Memorizing checkpoint trained further (its memory layer writes the keys) vs the frozen backbone."""
    fig = go.Figure()
    for name, key, color in (("Memorizing: whole model keeps training", "memorizing", method_color("memorizing")),
                             ("LongMem: frozen backbone (SideNet training)", "frozen_backbone", SIDE)):
        rows = staleness[key]["history"]
        fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r["drift"] for r in rows], name=name,
                                 mode="lines+markers", line=dict(color=color)))
    return fig.update_layout(title="staleness: how far cached keys are from what the current weights would write"
                                   "<br>drift = mean over cached keys of 1 − cos(k_cached, k_now)",
                             margin=dict(t=90),
                             xaxis_title=axis_label("training step", "updates"),
                             yaxis_title=axis_label("key drift 1 − cos", "unitless"),
                             legend=dict(orientation="h", y=-0.25))


def compare_memorizing_figure(longmem_eval: dict, memorizing_eval: dict) -> go.Figure:
    """Mean held-out loss against memory size for LongMem (SideNet + memory, `longmem_sweep` record) and the
    Memorizing checkpoint (its recorded `memory_eval`) on the same bytes; the frozen backbone as a dashed line."""
    fig = go.Figure()
    for name, record, color in (("LongMem: frozen backbone + SideNet", longmem_eval, SIDE),
                                ("Memorizing: whole model trained with memory", memorizing_eval,
                                 method_color("memorizing"))):
        labels = ["none" if s == 0 else f"{s:,}" for s in record["memory_sizes"]]
        fig.add_trace(go.Scatter(x=labels, y=record["mean_loss"], name=name, mode="lines+markers+text",
                                 text=[f"{v:.3f}" for v in record["mean_loss"]], textposition="top center",
                                 line=dict(color=color, width=3)))
    fig.add_hline(y=longmem_eval["mean_backbone"], line=dict(color=FROZEN, dash="dash"),
                  annotation_text=f"frozen backbone alone {longmem_eval['mean_backbone']:.3f}")
    return fig.update_layout(title=f"same bytes: first {longmem_eval['eval_bytes']:,} of each of "
                                   f"{len(longmem_eval['documents'])} held-out files",
                             xaxis_title=axis_label("memory size", "tokens per lane"),
                             yaxis_title=axis_label("loss", "nats/byte"), legend=dict(orientation="h", y=-0.25))
