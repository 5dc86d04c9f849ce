"""One look for every longlab figure: colours, fonts, axis labels.

Stable, small API (other viz modules import it):
- `COLORS`: named UI colours (ink, grid, background, accent, muted, good, bad).
- `BRANCH_COLORS`: list of colours for pattern branches (branch i -> BRANCH_COLORS[i % len]).
- `METHOD_COLORS`: method name -> colour, so a method looks the same in every notebook.
- `method_color(name)`, `branch_color(i)`: lookups with a fallback instead of a KeyError.
- `axis_label(quantity, unit=None)`: "quantity (unit)".
- `apply_theme(fig)`: fonts, background, grid, margins; returns fig.
- `style(fig, title=None, x=None, y=None, legend=True)`: apply_theme plus title and axis labels.
"""
from __future__ import annotations

import plotly.graph_objects as go

COLORS = {
    "ink": "#1f2933",
    "muted": "#7b8794",
    "grid": "#e4e7eb",
    "background": "#ffffff",
    "empty": "#f5f7fa",  # cell not attended in a heatmap
    "accent": "#d64545",
    "good": "#2f9e44",
    "bad": "#c92a2a",
}

# Okabe-Ito inspired, colour-blind safe; branch 0 (shortest segments) first.
BRANCH_COLORS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]

METHOD_COLORS = {
    "dense": "#495057",
    "sliding": "#56b4e9",
    "dilated": "#0072b2",
    "longnet": "#0072b2",
    "memorizing": "#e69f00",
    "focused": "#d55e00",
    "longmem": "#a87900",
    "retro": "#7d5a3c",
    "ulysses": "#009e73",
    "ring": "#cc79a7",
    "zigzag": "#9c36b5",
}

FONT_FAMILY = "Inter, 'Helvetica Neue', Arial, sans-serif"
FONT_SIZE = 13


def branch_color(i: int) -> str:
    """Colour of branch `i` (cycles through BRANCH_COLORS)."""
    return BRANCH_COLORS[int(i) % len(BRANCH_COLORS)]


def method_color(name: str) -> str:
    """Colour of method `name` (case-insensitive); unknown names get COLORS['muted']."""
    return METHOD_COLORS.get(str(name).lower(), COLORS["muted"])


def axis_label(quantity: str, unit: str | None = None) -> str:
    """'quantity (unit)': every axis states its unit."""
    return f"{quantity} ({unit})" if unit else quantity


def apply_theme(fig: go.Figure) -> go.Figure:
    """Set fonts, white background, light grid and compact margins on `fig` (in place); returns it."""
    fig.update_layout(
        font=dict(family=FONT_FAMILY, size=FONT_SIZE, color=COLORS["ink"]),
        paper_bgcolor=COLORS["background"],
        plot_bgcolor=COLORS["background"],
        margin=dict(l=60, r=20, t=60, b=55),
        hoverlabel=dict(font_family=FONT_FAMILY),
        legend=dict(bgcolor="rgba(255,255,255,0.8)"),
    )
    axis = dict(showgrid=True, gridcolor=COLORS["grid"], zeroline=False, linecolor=COLORS["muted"],
                ticks="outside", tickcolor=COLORS["muted"])
    fig.update_xaxes(**axis)
    fig.update_yaxes(**axis)
    return fig


def style(fig: go.Figure, title: str | None = None, x: str | None = None, y: str | None = None,
          legend: bool = True) -> go.Figure:
    """apply_theme(fig), then title, x/y axis titles and legend visibility; returns fig."""
    apply_theme(fig)
    if title is not None:
        fig.update_layout(title=dict(text=title, x=0.02, xanchor="left"))
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    fig.update_layout(showlegend=legend)
    return fig
