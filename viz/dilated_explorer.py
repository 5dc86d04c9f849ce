"""Figures for notebook 01 (LongNet dilated attention), all drawn from a `Dilated` pattern object.

- `head_grid(pattern, n, heads)`: small multiples, one query x key panel per head, coloured by branch set;
- `query_keys(pattern, n, heads, head, query)`: the keys one query sees, one row per branch plus the union;
- `flops_figure(patterns, sizes, head_dim, heads)`: FLOPs vs N on log-log axes;
- `masking_vs_gathering(pattern, n, heads, head, block)`: FlexAttention block mask next to the gathered
  dense blocks, and the work each approach does;
- `runtime_figure(rows)`: measured seconds (dilated vs SDPA) from `longlab.bench.dilated.measure` rows;
- `dilated_explorer(...)`: sliders for w0, alpha, branches, N, head, causal, offsets around the heatmap.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from longlab.analysis.complexity import flops_vs_n, masked_costs
from longlab.attention.dilated_layout import branch_blocks
from longlab.attention.patterns import Dilated, Pattern
from longlab.table import format_table
from viz.branch_colors import BranchSets, branch_codes
from viz.pattern_heatmap import pattern_heatmap, pattern_label
from viz.theme import COLORS, axis_label, branch_color, method_color, series_color
from viz.widgets import explorer


def head_grid(pattern: Pattern, n: int, heads: int, columns: int = 4) -> go.Figure:
    """One small query x key heatmap per head; colour = set of branches (same colours as pattern_heatmap)."""
    codes = branch_codes(pattern.branch_masks(heads, n).numpy())  # (H, N, N)
    sets = BranchSets.of(codes, pattern.branch_names())
    rows = math.ceil(heads / columns)
    fig = make_subplots(rows=rows, cols=min(columns, heads), subplot_titles=[f"head {h}" for h in range(heads)],
                        horizontal_spacing=0.03, vertical_spacing=0.08)
    for h in range(heads):
        fig.add_trace(go.Heatmap(z=sets.category_z(codes[h]), **sets.heatmap_range(), colorscale=sets.colorscale(),
                                 showscale=False,
                                 hovertemplate=f"head {h}: query %{{y}}, key %{{x}}<extra></extra>"),
                      row=h // columns + 1, col=h % columns + 1)
    fig.update_layout(title=f"All heads: {pattern_label(pattern)}, N = {n}<br><sup>each head keeps different "
                            f"rows (its offset); together the heads cover every position</sup>", showlegend=False)
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_layout(plot_bgcolor=COLORS["empty"], height=230 * rows + 110, width=900, margin=dict(t=110))
    return fig


def query_keys(pattern: Pattern, n: int, heads: int, head: int, query: int) -> go.Figure:
    """Markers at the keys query `query` of head `head` sees, one row per branch and one for the union."""
    keys = pattern.keys_for(query, head, heads, n)
    names = pattern.branch_names()
    fig = go.Figure()
    union = set()
    for b, positions in keys.items():
        pos = positions.tolist()
        union.update(pos)
        fig.add_trace(go.Scatter(x=pos, y=[names[b]] * len(pos), mode="markers", name=names[b],
                                 marker=dict(color=branch_color(b), size=9, symbol="square"),
                                 hovertemplate="key %{x}<extra>" + names[b] + "</extra>"))
    fig.add_trace(go.Scatter(x=sorted(union), y=["union"] * len(union), mode="markers", name="union",
                             marker=dict(color=COLORS["ink"], size=9, symbol="square")))
    fig.add_vline(x=query, line=dict(color=COLORS["accent"], dash="dash"), annotation_text=f"query {query}")
    fig.update_layout(title=f"Keys seen by query {query} (head {head}): {len(union)} distinct, "
                            f"{sum(len(v) for v in keys.values())} counted over branches",
                      xaxis_title=axis_label("key position j", "token"), yaxis_title="branch (w, r)")
    fig.update_xaxes(range=[-0.5, n - 0.5])
    fig.update_layout(height=180 + 40 * len(keys), width=900)
    return fig


def flops_figure(patterns: dict[str, Pattern], sizes, head_dim: int = 64, heads: int = 8) -> go.Figure:
    """FLOPs (QK^T + PV, all heads) vs N on log-log axes, computed by each pattern object."""
    table = flops_vs_n(patterns, sizes, head_dim, heads)
    fig = go.Figure()
    for i, (name, flops) in enumerate(table.items()):
        fig.add_trace(go.Scatter(x=list(sizes), y=flops, name=name, mode="lines+markers",
                                 line=dict(color=series_color(name, i))))
    fig.update_layout(title=f"Attention FLOPs per layer ({heads} heads, d = {head_dim})",
                      xaxis_title=axis_label("sequence length N", "tokens"),
                      yaxis_title=axis_label("attention work, QK^T + PV", "FLOP"))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(width=800, height=450)
    return fig


def masking_vs_gathering(pattern: Dilated, n: int, heads: int, head: int = 0, block: int = 16) -> go.Figure:
    """Left: the block x block tiles a masked block-sparse kernel (FlexAttention BlockMask) must compute for
    one head. Middle: the dense blocks the gathered kernel runs (rows x rows per segment, per branch).
    Right: FLOPs of dense masking, block masking and gathering, from `longlab.analysis.complexity`."""
    occ = pattern.block_occupancy(heads, n, block)[head].numpy().astype(float)
    costs = masked_costs(pattern, heads, n, head_dim=64, block=block)
    fig = make_subplots(rows=1, cols=3, column_widths=[0.34, 0.36, 0.30], horizontal_spacing=0.1,
                        subplot_titles=(f"block mask: {int(occ.sum())}/{occ.size} tiles of {block}x{block}",
                                        "gathered: one dense block per segment", "work (all heads, d = 64)"))
    fig.add_trace(go.Heatmap(z=occ, colorscale=[[0, COLORS["empty"]], [1, method_color("dense")]], showscale=False,
                             x0=block / 2, dx=block, y0=block / 2, dy=block,
                             hovertemplate="q tile %{y}, k tile %{x}: %{z}<extra></extra>"), row=1, col=1)
    x = 0
    for b in range(pattern.num_branches):
        for blk in branch_blocks(pattern, b, heads, n):
            if head not in blk.head_ids:
                continue
            for _ in range(blk.segments):
                fig.add_shape(type="rect", x0=x, x1=x + blk.rows, y0=0, y1=blk.rows, row=1, col=2,
                              fillcolor=branch_color(b), opacity=0.8, line=dict(color="white", width=1))
                x += blk.rows
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=pattern.branch_names()[b],
                                 marker=dict(color=branch_color(b), symbol="square", size=12)), row=1, col=2)
    fig.update_xaxes(range=[0, max(x, 1)], title_text=axis_label("gathered rows, side by side", "rows"), row=1, col=2)
    tallest = max((blk.rows for b in range(pattern.num_branches) for blk in branch_blocks(pattern, b, heads, n)),
                  default=1)
    fig.update_yaxes(range=[0, tallest * 1.15], title_text=axis_label("block side", "rows"), row=1, col=2)
    names = ["dense mask", "block mask", "gathered"]
    fig.add_trace(go.Bar(x=names, y=[costs[k] for k in names], showlegend=False,
                         marker_color=[method_color("dense"), method_color("sliding"), method_color("dilated")],
                         text=[f"{costs[k] / costs['gathered']:.1f}x" for k in names], textposition="outside"),
                  row=1, col=3)
    fig.update_yaxes(type="log", title_text=axis_label("work", "FLOP"), tickformat=".2s", nticks=4, row=1, col=3)
    fig.update_xaxes(title_text="kernel", row=1, col=3)
    fig.update_yaxes(autorange="reversed", row=1, col=1, title_text=axis_label("query", "token"))
    fig.update_xaxes(title_text=axis_label("key", "token"), row=1, col=1)
    fig.update_layout(title=f"Masking vs gathering: {pattern_label(pattern)}, N = {n}, head {head}")
    fig.update_layout(height=470, legend=dict(orientation="h", x=0.34, xanchor="left", y=-0.28, yanchor="top"),
                      margin=dict(b=120))
    return fig


def runtime_figure(rows: list[dict], title: str = "Measured runtime") -> go.Figure:
    """Grouped bars of seconds per (N, causal, pass): dilated vs SDPA, speedup written on the dilated bars."""
    labels = [f"N={r['N']}, {'causal' if str(r['causal']) in ('True', 'true') else 'full'}, {r['pass']}"
              for r in rows]
    fig = go.Figure([
        go.Bar(x=labels, y=[float(r["sdpa_s"]) for r in rows], name="dense SDPA", marker_color=method_color("dense")),
        go.Bar(x=labels, y=[float(r["dilated_s"]) for r in rows], name="dilated (longlab)",
               marker_color=method_color("dilated"), text=[f"{float(r['speedup']):.1f}x" for r in rows],
               textposition="outside"),
    ])
    fig.update_layout(title=title, xaxis_title="case (N in tokens, mask, pass)", yaxis_title=axis_label("time", "s"))
    fig.update_yaxes(type="log")
    fig.update_layout(barmode="group", width=900, height=420)
    return fig


def dilated_explorer(w0: int = 4, alpha: int = 2, branches: int = 3, n: int = 32, heads: int = 4, head: int = 0,
                     causal: bool = False, offsets: str = "reference", max_n: int = 128, flag: bool | None = None):
    """Sliders for w0, alpha (w_i = w0 alpha^i, r_i = alpha^i), branches, N, head, causal and offset mode
    around `pattern_heatmap`; the plain go.Figure for the given values when headless."""
    import ipywidgets as w

    controls = {
        "w0": w.IntSlider(value=w0, min=1, max=32, description="w0"),
        "alpha": w.IntSlider(value=alpha, min=1, max=4, description="alpha"),
        "branches": w.IntSlider(value=branches, min=1, max=4, description="branches"),
        "n": w.IntSlider(value=n, min=4, max=max_n, step=4, description="N"),
        "head": w.IntSlider(value=head, min=0, max=heads - 1, description="head"),
        "causal": w.Checkbox(value=causal, description="causal"),
        "offsets": w.Dropdown(options=["reference", "paper"], value=offsets, description="offsets"),
    }

    def draw(w0, alpha, branches, n, head, causal, offsets):
        return pattern_heatmap(Dilated.geometric(w0, alpha, branches, causal, offsets), n, heads=heads, head=head)

    return explorer(draw, controls, flag=flag)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts -> a Markdown table (floats with 4 significant digits), for display(Markdown(...))."""
    return format_table(rows, columns, markdown=True)
