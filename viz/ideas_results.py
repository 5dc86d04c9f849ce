"""Measured figures of notebook 08, read from the recorded results in data/ideas (see its make script).

- `extrapolation_figure(rec)`: loss vs position on 8x the trained context, one curve per position scheme;
- `paged_figure(rec)`: recall of the true top-32 keys and output error vs fraction of pages read;
- `linear_speed_figure(rows)`: seconds per forward, linear attention vs softmax attend, vs N;
- `floatlike_vs_longnet_figure(rec)`: keys per query vs distance at equal FLOPs;
- `quality_figure(runs)`: held-out loss during training per attention kind;
- `passkey_depth_figure(runs)`: passkey digit loss and exact match vs the key line's distance, per attention kind.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.theme import COLORS, axis_label, branch_color

SCHEME_NAMES = {"rope": "RoPE", "rerope": "ReRoPE", "leaky_rerope": "leaky ReRoPE", "sliding": "sliding window"}


def extrapolation_figure(rec: dict) -> go.Figure:
    ctx = rec["trained_context"]
    fig = go.Figure()
    for i, (scheme, curve) in enumerate(rec["curves"].items()):
        settings = ", ".join(f"{k} = {v:g}" for k, v in curve["settings"].items())
        x = [s + rec["bin_width"] / 2 for s in curve["bin_start"]]
        fig.add_trace(go.Scatter(x=x, y=curve["loss"], mode="lines+markers", line=dict(color=branch_color(i)),
                                 name=f"{SCHEME_NAMES.get(scheme, scheme)}" + (f" ({settings})" if settings else "")))
    fig.add_vline(x=ctx, line=dict(color=COLORS["muted"], dash="dash"))
    fig.add_annotation(x=ctx, y=1.0, yref="paper", text=f"trained context {ctx}", showarrow=False, xanchor="left")
    fig.update_layout(title=f"Length extrapolation of the committed TinyLM ({rec['sequences']} held-out windows of "
                            f"{rec['length']} bytes)", height=460, width=900,
                      xaxis_title=axis_label("position in the sequence", "tokens"),
                      yaxis_title=axis_label(f"next-token loss (mean over {rec['bin_width']} positions)", "nats"),
                      legend=dict(orientation="h", y=-0.22))
    return fig


def paged_figure(rec: dict) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["recall of the true top-32 keys", "output error vs dense"])
    groups = {}
    for row in rec["rows"]:
        groups.setdefault((row["keys"], row["cached_tokens"]), []).append(row)
    for (keys, n), rows in sorted(groups.items()):
        name = f"{keys} keys, {n // 1024}k cached"
        style = dict(color=branch_color(0 if keys == "checkpoint" else 1), dash="solid" if n < 65536 else "dot")
        x = [r["fraction_read"] for r in rows]
        fig.add_trace(go.Scatter(x=x, y=[r["recall_top32"] for r in rows], name=name, mode="lines+markers",
                                 line=style, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["relative_error"] for r in rows], name=name, mode="lines+markers",
                                 line=style, legendgroup=name, showlegend=False), row=1, col=2)
    fig.update_xaxes(type="log", title_text=axis_label("fraction of pages read, (K + 1) / pages", "fraction"))
    fig.update_yaxes(title_text=axis_label("recall", "fraction"), row=1, col=1)
    fig.update_yaxes(title_text=axis_label("||out - dense|| / ||dense||", "ratio"), row=1, col=2)
    fig.update_layout(title=f"Quest-style page selection, pages of {rec['page_size']} tokens", height=430, width=940,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def linear_speed_figure(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    n = [int(r["N"]) for r in rows]
    for i, (key, name) in enumerate((("attend_s", "softmax attend (exact, O(N^2))"),
                                     ("linear_s", "linear attention (O(N))"))):
        fig.add_trace(go.Scatter(x=n, y=[float(r[key]) for r in rows], name=name, mode="lines+markers",
                                 line=dict(color=branch_color(i))))
    r0 = rows[0]
    fig.update_layout(title=f"Causal forward time, {r0['heads']} heads, D = {r0['D']}, {r0['device']}",
                      xaxis=dict(type="log", title=axis_label("sequence length N", "tokens")),
                      yaxis=dict(type="log", title=axis_label("time per forward", "s")), height=400, width=820)
    return fig


def floatlike_vs_longnet_figure(rec: dict) -> go.Figure:
    comps = rec["comparisons"]
    fig = make_subplots(rows=1, cols=len(comps), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"m = {c['mantissa_bits']}" for c in comps])
    for col, comp in enumerate(comps, start=1):
        for i, key in enumerate(("float_like", "longnet")):
            part = comp[key]
            name = "float-like" if key == "float_like" else "LongNet (nearest FLOPs)"
            fig.add_trace(go.Scatter(x=part["keys_vs_distance"]["distance"], y=part["keys_vs_distance"]["keys"],
                                     mode="lines+markers", name=name, line=dict(color=branch_color(i)),
                                     legendgroup=name, showlegend=col == 1,
                                     hovertemplate=f"{name}: {part['pairs']} pairs<extra></extra>"),
                          row=1, col=col)
    fig.update_xaxes(type="log", title_text=axis_label("distance |i - j|", "tokens"))
    fig.update_yaxes(type="log", title_text=axis_label("keys seen per query", "keys / distance"), col=1)
    fig.update_layout(title=f"Allocation vs distance at equal FLOPs, N = {comps[0]['n']}, {comps[0]['heads']} heads",
                      height=400, width=980, legend=dict(orientation="h", y=-0.3))
    return fig


def quality_figure(runs: dict, unigram: float | None = None) -> go.Figure:
    """Held-out loss against training seconds for each attention kind (same steps, batch, data, seed)."""
    fig = go.Figure()
    for i, (kind, run) in enumerate(runs.items()):
        hist = run["history"]
        fig.add_trace(go.Scatter(x=[h["elapsed_s"] for h in hist], y=[h["val_loss"] for h in hist],
                                 mode="lines+markers", name=f"{kind} ({run['val_loss']:.3f})",
                                 line=dict(color=branch_color(i)),
                                 hovertemplate=f"{kind}: step %{{text}}<extra></extra>",
                                 text=[h["step"] for h in hist]))
    if unigram is not None:
        fig.add_hline(y=unigram, line=dict(color=COLORS["muted"], dash="dot"))
        fig.add_annotation(x=0, xref="paper", y=unigram, text="unigram bar", showarrow=False, xanchor="left",
                           yanchor="bottom")
    fig.update_layout(title="Same TinyLM budget per attention kind: held-out loss during training",
                      xaxis_title=axis_label("training time (shared machine)", "s"),
                      yaxis_title=axis_label("held-out loss", "nats/byte"), height=420, width=880)
    return fig


def passkey_depth_figure(runs: dict) -> go.Figure:
    """Passkey by depth per attention kind (records of `longlab.analysis.passkey_depth.passkey_by_depth`).

    Left: teacher-forced loss on the key's digits among the ten digits (nats/digit; ln 10 = no idea which digit,
    0 = copied), solid; dotted, the same for the key's repeat inside the key line (~20 tokens after its first
    statement, at every depth). Middle: the loss over all 256 bytes. Right: greedy exact match. x: tokens from the
    key line to the question's end, the key's relative depth in brackets under each tick. Runs without a
    `passkey_by_depth` record are left out; colours follow the order of `runs` as in quality_figure."""
    measured = {kind: run["passkey_by_depth"] for kind, run in runs.items() if run.get("passkey_by_depth")}
    if not measured:
        raise ValueError("no run has a passkey_by_depth record; regenerate them with "
                         "`python data/ideas/make_ideas_results.py quality`")
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("which digits: loss among the ten digits", "loss over all bytes",
                                        "greedy exact match"))
    panels = ((1, "digit_loss_given_digit", "solid", "answer"), (1, "repeat_loss_given_digit", "dot", "repeat"),
              (2, "digit_loss", "solid", "answer"), (3, "accuracy", "solid", "answer"))
    for i, kind in enumerate(runs):
        if kind not in measured:
            continue
        rows = measured[kind]
        x = [r["distance_tokens"] for r in rows]
        for col, field, dash, what in panels:
            fig.add_trace(go.Scatter(x=x, y=[r[field] for r in rows], mode="lines+markers", name=kind,
                                     legendgroup=kind, showlegend=field == "digit_loss",
                                     line=dict(color=branch_color(i), dash=dash),
                                     text=[f"depth {r['depth']:g}" for r in rows], meta=field,
                                     hovertemplate=f"{kind} {what}: %{{y:.3f}}, %{{x:.0f}} tokens, %{{text}}"
                                                   f"<extra></extra>"),
                          row=1, col=col)
    rows = next(iter(measured.values()))
    ticks = dict(tickvals=[r["distance_tokens"] for r in rows],
                 ticktext=[f"{r['distance_tokens']:.0f}<br>({r['depth']:g})" for r in rows])
    fig.add_hline(y=math.log(10), line=dict(color=COLORS["muted"], dash="dash"), row=1, col=1)
    fig.add_annotation(x=0, xref="x domain", y=math.log(10), yref="y", text="ln 10: a random digit", showarrow=False,
                       xanchor="left", yanchor="bottom")
    fig.update_xaxes(title_text=axis_label("key line to question end", "tokens") + "<br>(key depth: 0 = prompt start)",
                     autorange="reversed", **ticks)
    fig.update_yaxes(title_text=axis_label("loss on the key's digits", "nats/digit"), col=1)
    fig.update_yaxes(title_text=axis_label("loss on the key's digits", "nats/digit"), col=2)
    fig.update_yaxes(title_text=axis_label("exact match", "fraction of prompts"), range=[-0.05, 1.05], col=3)
    examples = rows[0]["examples"]
    fig.update_layout(title=f"Passkey by depth after the same training budget ({examples} keys per depth; "
                            f"dotted: the key's repeat inside the key line)",
                      height=480, width=1100, legend=dict(orientation="h", y=-0.42))
    return fig
