"""One look for every longlab figure: colours, fonts, axes, registered once as the plotly template "longlab".

Importing any viz module imports this one, which registers the template and makes it plotly's default, so
every figure built afterwards (go.Figure, make_subplots, FigureWidget) carries it; no figure styles itself.
Figures set only what is theirs: the title text and the axis titles (always with units, see `axis_label`).

Stable, small API (other viz modules import it):
- `COLORS`: named UI colours (ink, grid, background, accent, muted, good, bad, empty).
- `BRANCH_COLORS`: list of colours for pattern branches (branch i -> BRANCH_COLORS[i % len]).
- `METHOD_COLORS`: method name -> colour, so a method looks the same in every notebook.
- `method_color(name)`, `branch_color(i)`, `series_color(name, i)`: lookups with a fallback, never a KeyError.
- `axis_label(quantity, unit=None)`: "quantity (unit)".
- `TEMPLATE`: the template's name; `longlab_template()` builds it (registered at import).
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
import plotly.io as pio

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
    "linear": "#868e96",
    "rerope": "#2b8a3e",
    "pooled": "#5c940d",
    "floatlike": "#1864ab",
    "paged": "#e64980",
}

FONT_FAMILY = "Inter, 'Helvetica Neue', Arial, sans-serif"
FONT_SIZE = 13
TEMPLATE = "longlab"


def branch_color(i: int) -> str:
    """Colour of branch `i` (cycles through BRANCH_COLORS)."""
    return BRANCH_COLORS[int(i) % len(BRANCH_COLORS)]


def method_color(name: str) -> str:
    """Colour of method `name` (case-insensitive); unknown names get COLORS['muted']."""
    return METHOD_COLORS.get(str(name).lower(), COLORS["muted"])


def series_color(name: str, i: int) -> str:
    """Colour of a curve named `name`, the i-th of its figure: its method's colour when its first word names
    a method ("dilated w0=4"), else branch_color(i)."""
    color = method_color(str(name).split()[0] if str(name).split() else "")
    return color if color != COLORS["muted"] else branch_color(i)


def axis_label(quantity: str, unit: str | None = None) -> str:
    """'quantity (unit)': every axis states its unit."""
    return f"{quantity} ({unit})" if unit else quantity


def label_headroom(values, above: float = 0.15, below: float = 0.06) -> list[float]:
    """y-axis range [lo, hi] around `values` with `above` of their span free over the highest point, so that a
    value label printed on top of it ("top center") stays inside the plot instead of touching its edge."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        raise ValueError("label_headroom needs at least one finite value")
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or abs(hi) or 1.0
    return [lo - below * span, hi + above * span]


def longlab_template() -> go.layout.Template:
    """plotly's default template with longlab's fonts, white background, light grid, left title and margins
    that leave room for titles (automargin grows them when tick labels need more)."""
    template = go.layout.Template(pio.templates["plotly"])
    axis = dict(showgrid=True, gridcolor=COLORS["grid"], zeroline=False, linecolor=COLORS["muted"],
                ticks="outside", tickcolor=COLORS["muted"], automargin=True)
    template.layout.update(
        font=dict(family=FONT_FAMILY, size=FONT_SIZE, color=COLORS["ink"]),
        paper_bgcolor=COLORS["background"],
        plot_bgcolor=COLORS["background"],
        margin=dict(l=60, r=20, t=70, b=55),
        title=dict(x=0.02, xanchor="left"),
        hoverlabel=dict(font_family=FONT_FAMILY),
        legend=dict(bgcolor="rgba(255,255,255,0.8)"),
        xaxis=axis,
        yaxis=axis,
    )
    return template


pio.templates[TEMPLATE] = longlab_template()
pio.templates.default = TEMPLATE
