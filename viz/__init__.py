"""longlab.viz: plotly figures and ipywidgets controls for the notebooks.

Every figure is drawn from a longlab object (a Pattern, a memory, a communicator): viz never re-derives
what the library computes. Modules:
- `viz.theme`: colours (COLORS, BRANCH_COLORS, METHOD_COLORS), `axis_label`, and the plotly template "longlab"
  (registered as plotly's default on import: figures set only their titles and axis labels).
- `viz.branch_colors`: colour of a heatmap cell by the set of pattern branches that show it.
- `viz.widgets`: `interactive()`/`as_widget(fig)`: a live figure (`viz.live_figure.LiveFigure`, a FigureWidget) in
  a live kernel, plain go.Figure headless.
- `viz.pattern_heatmap`: query x key heatmap of a Pattern, coloured by branch; `pattern_explorer()` widget.
- `viz.complexity`: dense attention cost (FLOPs, score-matrix bytes) vs sequence length.
- `viz.tour`: the tour's methods table with links to the notebooks that exist (others marked coming).
longlab itself never imports viz.
"""
from viz import theme as _theme  # noqa: E402, F401  (registers the "longlab" plotly template)
