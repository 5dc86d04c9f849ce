"""Query x key heatmap of a longlab Pattern, coloured by branch, with multiplicity visible.

Each cell (query i, key j) is coloured by the set of branches through which head `head` sees key j:
one colour per branch (theme.BRANCH_COLORS), cells seen through several branches get the blend of their
colours, darkened once per extra branch, and (for N <= `count_limit`) print their multiplicity. Unseen cells
are left empty. Everything is read from `pattern.branch_masks`, the same masks the kernels are tested on.

- `pattern_heatmap(pattern, n, heads=1, head=0)` -> go.Figure
- `pattern_explorer(kind="dilated", ...)` -> ipywidgets VBox with sliders (or the go.Figure when headless)
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from longlab.attention.patterns import Dense, Dilated, Pattern, SlidingWindow
from viz.branch_colors import BranchSets, branch_codes
from viz.theme import COLORS, axis_label
from viz.widgets import explorer

KINDS = ("dense", "sliding", "dilated", "floatlike")


def pattern_label(pattern: Pattern) -> str:
    """Short human name, e.g. 'Dilated [w=4, r=1 | w=8, r=2], causal'."""
    name = f"{type(pattern).__name__} [{' | '.join(pattern.branch_names())}]"
    return name + (", causal" if getattr(pattern, "causal", False) else "")


def _check(pattern, n, heads, head):
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a longlab.attention.patterns.Pattern, got {type(pattern).__name__}")
    for name, value in (("n", n), ("heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < heads:
        raise ValueError(f"head must be an int in [0, heads={heads}), got {head!r}")
    if n > 512:
        raise ValueError(f"n={n} is too large for an N x N heatmap; use n <= 512 (patterns are scale-free)")


def pattern_heatmap(pattern: Pattern, n: int, heads: int = 1, head: int = 0, title: str | None = None,
                    count_limit: int = 48) -> go.Figure:
    """Heatmap of which keys (x) each query (y) of head `head` sees, out of `heads` heads, at length n.

    Colour = the set of branches showing that key (see module docstring); the colour bar lists every set
    present with its multiplicity (x m); hover shows query, key, multiplicity and branch names.
    """
    _check(pattern, n, heads, head)
    masks = pattern.branch_masks(heads, n)[:, head].numpy()  # (branches, N, N) bool
    code = branch_codes(masks)  # (N, N) bitmask of the branches showing each cell
    multiplicity = masks.sum(axis=0)
    sets = BranchSets.of(code, pattern.branch_names())
    counts = np.where(multiplicity > 1, multiplicity.astype(str), "") if n <= count_limit else None
    k = max(len(sets.codes), 1)
    heat = go.Heatmap(
        z=sets.category_z(code), **sets.heatmap_range(), colorscale=sets.colorscale(),
        xgap=1 if n <= 64 else 0, ygap=1 if n <= 64 else 0,
        customdata=np.dstack([multiplicity, sets.cell_labels(code)]),
        hovertemplate="query %{y}, key %{x}<br>seen x%{customdata[0]}: %{customdata[1]}<extra></extra>",
        colorbar=dict(title=dict(text="seen through"), tickvals=list(range(len(sets.labels))),
                      ticktext=list(sets.labels), thickness=14, len=min(1.0, 0.12 * k + 0.2)),
        text=counts, texttemplate="%{text}" if counts is not None else None, textfont=dict(size=9, color="white"),
    )
    fig = go.Figure(heat)
    seen = int(multiplicity.astype(bool).sum())
    if title is None:
        title = (f"{pattern_label(pattern)}<br><sup>head {head} of {heads}, N = {n}: "
                 f"{seen} of {n * n} query-key pairs seen ({100 * seen / (n * n):.0f}%), "
                 f"{int(multiplicity.sum())} scored</sup>")
    fig.update_layout(title=title, showlegend=False)
    fig.update_yaxes(title_text=axis_label("query position i", "token"), autorange="reversed", scaleanchor="x",
                     constrain="domain", showgrid=False)
    fig.update_xaxes(title_text=axis_label("key position j", "token"), constrain="domain", showgrid=False,
                     side="bottom")
    fig.update_layout(plot_bgcolor=COLORS["empty"], width=760, height=540, margin=dict(t=90))
    return fig


def make_pattern(kind: str, window: int = 8, segment: int = 8, ratio: int = 2, branches: int = 3,
                 causal: bool = False, mantissa: int = 1) -> Pattern:
    """Pattern for the explorer: 'dense', 'sliding' (window), 'dilated' with LongNet's geometric schedule
    w_i = segment * ratio^i, r_i = ratio^i for i < branches (paper section 2.2: both geometric, same ratio), or
    'floatlike' (keys on an m-bit floating-point grid of distances, m = mantissa; notebook 08)."""
    if kind == "floatlike":
        from longlab.attention.floatlike import FloatLike

        return FloatLike(mantissa, causal=causal)
    if kind == "dense":
        return Dense(causal=causal)
    if kind == "sliding":
        return SlidingWindow(window=window, causal=causal)
    if kind == "dilated":
        return Dilated(segment_lengths=tuple(segment * ratio**i for i in range(branches)),
                       dilation_rates=tuple(ratio**i for i in range(branches)), causal=causal)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def pattern_explorer(kind: str = "dilated", n: int = 32, heads: int = 4, head: int = 0, window: int = 6,
                     segment: int = 4, ratio: int = 2, branches: int = 3, causal: bool = False,
                     max_n: int = 128, flag: bool | None = None, mantissa: int = 1):
    """Sliders for pattern kind, N, head, window, segment, ratio, branches, causal around pattern_heatmap.

    Returns the ipywidgets VBox from viz.widgets.explorer when interactive, else the go.Figure for the
    given values (headless notebook runs). Sliders that do not apply to the chosen kind are hidden.
    """
    import ipywidgets as w

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    controls = {
        "kind": w.Dropdown(options=list(KINDS), value=kind, description="pattern"),
        "n": w.IntSlider(value=n, min=4, max=max_n, step=4, description="N"),
        "head": w.IntSlider(value=head, min=0, max=heads - 1, description="head"),
        "window": w.IntSlider(value=window, min=1, max=64, description="window"),
        "segment": w.IntSlider(value=segment, min=1, max=64, description="segment w0"),
        "ratio": w.IntSlider(value=ratio, min=1, max=4, description="ratio α"),
        "branches": w.IntSlider(value=branches, min=1, max=4, description="branches"),
        "causal": w.Checkbox(value=causal, description="causal"),
        "mantissa": w.IntSlider(value=mantissa, min=0, max=5, description="mantissa bits m"),
    }
    for control in controls.values():
        control.style.description_width = "initial"  # full labels, not "segment ..."

    def draw(kind, n, head, window, segment, ratio, branches, causal, mantissa):
        pattern = make_pattern(kind, window=window, segment=segment, ratio=ratio, branches=branches,
                               causal=causal, mantissa=mantissa)
        return pattern_heatmap(pattern, n, heads=heads, head=head)

    only = {"window": ("sliding",), "segment": ("dilated",), "ratio": ("dilated",), "branches": ("dilated",),
            "mantissa": ("floatlike",)}
    shown_when = {name: (lambda v, kinds=kinds: v["kind"] in kinds) for name, kinds in only.items()}
    return explorer(draw, controls, flag=flag, shown_when=shown_when)
