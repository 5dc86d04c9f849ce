"""The tour's cost figure: dense attention FLOPs and memory vs sequence length (log-log).

Numbers come from longlab.analysis.dense_cost (FLOPs from the Dense pattern); optional sparse patterns
are overlaid from their own `Pattern.flops`, so every curve is computed by the library.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from longlab.analysis.dense_cost import dense_cost_table, format_bytes, format_count
from longlab.attention.patterns import Pattern
from longlab.table import format_table
from viz.theme import COLORS, axis_label, branch_color, method_color

MEMORY_CURVES = (  # key in dense_cost rows, legend label, colour
    ("score_bytes", "N x N score matrix (naive kernel)", method_color("dense")),
    ("flash_bytes", "q, k, v, out + lse (flash kernel)", method_color("sliding")),
    ("kv_cache_bytes", "KV cache", COLORS["good"]),
)


def dense_cost_figure(ns: Sequence[int], head_dim: int = 128, heads: int = 32, dtype_bytes: int = 2,
                      patterns: Mapping[str, Pattern] | None = None, memory_line: float | None = 80e9,
                      memory_line_label: str = "80 GB accelerator") -> go.Figure:
    """Two panels vs N for one attention layer (batch 1): FLOPs (dense, plus `patterns` if given) and bytes
    (score matrix, flash working set, KV cache) with an optional horizontal memory line (bytes)."""
    rows = dense_cost_table(ns, head_dim=head_dim, heads=heads, dtype_bytes=dtype_bytes)
    n = [r["n"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("compute per layer", "memory per layer"),
                        horizontal_spacing=0.12)
    fig.add_trace(go.Scatter(
        x=n, y=[r["flops"] for r in rows], name="dense attention FLOPs", mode="lines+markers",
        line=dict(color=method_color("dense"), width=3), legendgroup="flops",
        customdata=[format_count(r["flops"]) for r in rows],
        hovertemplate="N = %{x}<br>%{customdata}FLOP<extra>dense</extra>"), row=1, col=1)
    for i, (label, pattern) in enumerate((patterns or {}).items()):
        if not isinstance(pattern, Pattern):
            raise TypeError(f"patterns[{label!r}] must be a Pattern, got {type(pattern).__name__}")
        flops = [pattern.flops(k, head_dim, heads) for k in n]
        fig.add_trace(go.Scatter(
            x=n, y=flops, name=f"{label} FLOPs", mode="lines+markers", legendgroup="flops",
            line=dict(color=branch_color(i + 1), width=2, dash="dot"),
            customdata=[format_count(f) for f in flops],
            hovertemplate="N = %{x}<br>%{customdata}FLOP<extra>" + label + "</extra>"), row=1, col=1)
    for key, label, color in MEMORY_CURVES:
        fig.add_trace(go.Scatter(
            x=n, y=[r[key] for r in rows], name=label, mode="lines+markers", line=dict(color=color, width=2),
            legendgroup="bytes", customdata=[format_bytes(r[key]) for r in rows],
            hovertemplate="N = %{x}<br>%{customdata}<extra>" + label + "</extra>"), row=1, col=2)
    if memory_line:
        fig.add_trace(go.Scatter(
            x=[n[0], n[-1]], y=[memory_line, memory_line], mode="lines+text", name=memory_line_label,
            line=dict(color=COLORS["accent"], dash="dash"), text=[memory_line_label, ""],
            textposition="top right", textfont=dict(color=COLORS["accent"]), legendgroup="bytes",
            hovertemplate=format_bytes(memory_line) + "<extra>" + memory_line_label + "</extra>"), row=1, col=2)
    fig.update_layout(title=f"What dense attention costs: one layer, {heads} heads x {head_dim}, "
                            f"{8 * dtype_bytes}-bit, batch 1")
    fig.update_xaxes(type="log", title_text=axis_label("sequence length N", "tokens"))
    fig.update_yaxes(type="log", exponentformat="power")
    top = max(max(r["score_bytes"] for r in rows), memory_line or 0)
    ticks = [2 ** (5 * k) for k in range(2, 13) if 2 ** (5 * k - 5) <= top]  # 1 KiB, 32 KiB, 1 MiB, ...
    fig.update_yaxes(tickvals=ticks, ticktext=[format_bytes(t) for t in ticks], row=1, col=2)
    fig.update_yaxes(title_text=axis_label("attention FLOPs", "FLOP"), row=1, col=1)
    fig.update_yaxes(title_text=axis_label("memory", "bytes"), row=1, col=2)
    fig.update_layout(width=1000, height=460, legend=dict(orientation="h", y=-0.22, x=0))
    return fig


def dense_cost_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of dense_cost rows (N, FLOPs, score matrix, flash working set, KV cache)."""
    columns = ["n", "flops", "score_bytes", "flash_bytes", "kv_cache_bytes"]
    headers = {"n": "N (tokens)", "flops": "FLOPs", "score_bytes": "N x N scores", "flash_bytes": "flash working set",
               "kv_cache_bytes": "KV cache"}
    formats = {"n": "{:,}".format, "flops": lambda f: f"{format_count(f)}FLOP", "score_bytes": format_bytes,
               "flash_bytes": format_bytes, "kv_cache_bytes": format_bytes}
    return format_table(rows, columns, markdown=True, formats=formats, headers=headers,
                        align_right=True)
