"""Export the README pictures to data/figures/*.png: `make figures` (or run this file with .venv/bin/python).

The figures are the same viz functions the tour notebook shows. Static export uses kaleido 1.x, which
drives a Chromium it finds by itself (Debian's /usr/bin/chromium here); install the `export` extra.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from longlab.attention.patterns import Dilated, SlidingWindow
from viz.complexity import dense_cost_figure
from viz.pattern_heatmap import make_pattern, pattern_heatmap

OUT = Path(__file__).resolve().parent / "figures"


# (x domain, y domain) of the three panels of readme.png: heatmap (+ its colour bar), FLOPs, memory
PANELS = (((0.0, 0.25), (0.0, 0.86)), ((0.49, 0.72), (0.0, 0.86)), ((0.79, 1.0), (0.0, 0.86)))


def side_by_side(pattern_fig: go.Figure, cost_fig: go.Figure) -> go.Figure:
    """One picture: the pattern heatmap (axes x/y) next to the two cost panels (x/y and x2/y2).
    Traces are copied; the two source figures are left untouched."""
    fig = go.Figure()
    for trace in pattern_fig.data:
        fig.add_trace(type(trace)(trace).update(colorbar=dict(x=PANELS[0][0][1] + 0.01, len=0.8, y=0.43)))
    for trace in cost_fig.data:
        fig.add_trace(type(trace)(trace).update(xaxis="x3" if trace.xaxis == "x2" else "x2",
                                   yaxis="y3" if trace.yaxis == "y2" else "y2"))
    layout = {}
    for i, (source, name) in enumerate([(pattern_fig.layout, ""), (cost_fig.layout, ""), (cost_fig.layout, "2")]):
        x = source[f"xaxis{name}"].to_plotly_json()
        y = source[f"yaxis{name}"].to_plotly_json()
        k = "" if i == 0 else str(i + 1)
        x.update(domain=PANELS[i][0], anchor=f"y{k}")
        y.update(domain=PANELS[i][1], anchor=f"x{k}")
        if i == 0:
            y.update(scaleanchor="x")
        layout[f"xaxis{k}"], layout[f"yaxis{k}"] = x, y
    fig.update_layout(**layout)
    heads = [pattern_fig.layout.title.text.replace("<br><sup>", "<br>").replace("</sup>", ""),
             cost_fig.layout.annotations[0].text, cost_fig.layout.annotations[1].text]
    for (xd, yd), text in zip(PANELS, heads):
        fig.add_annotation(text=text, x=sum(xd) / 2, y=yd[1] + 0.02, xref="paper", yref="paper",
                           showarrow=False, yanchor="bottom", font=dict(size=13))
    fig.update_layout(title="longlab: a LongNet dilated pattern, and what dense attention costs as N grows")
    fig.update_xaxes(showgrid=False, selector=dict(anchor="y"))
    fig.update_yaxes(showgrid=False, selector=dict(anchor="x"))
    fig.add_shape(type="rect", xref="x domain", yref="y domain", x0=0, x1=1, y0=0, y1=1, layer="below",
                  line_width=0, fillcolor=pattern_fig.layout.plot_bgcolor)  # "unseen" backdrop, heatmap only
    fig.update_layout(width=1500, height=560,
                      legend=dict(orientation="h", x=0.49, y=-0.2), margin=dict(t=70, b=110, l=60, r=20))
    return fig


def figures() -> dict:
    """name -> go.Figure for every README picture."""
    pattern = pattern_heatmap(make_pattern("dilated", segment=4, ratio=2, branches=3), 32, heads=4)
    cost = dense_cost_figure(
        [2**k for k in range(10, 21)],
        patterns={"sliding window 4096": SlidingWindow(window=4096),
                  "LongNet dilated, w = 2k..32k, r = 1..16": Dilated((2048, 4096, 8192, 16384, 32768),
                                                                    (1, 2, 4, 8, 16))})
    return {"dilated_pattern": pattern, "dense_cost": cost, "readme": side_by_side(pattern, cost)}


def main(out: Path = OUT, names: list[str] | None = None) -> list[Path]:
    """Write the PNGs (all, or only `names`) into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures().items():
        if names is not None and name not in names:
            continue
        path = out / f"{name}.png"
        fig.write_image(path, scale=1)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        paths.append(path)
    return paths


if __name__ == "__main__":
    main()
