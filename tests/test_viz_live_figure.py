"""viz.live_figure: a FigureWidget whose plotly front end is compiled once per page (the browser test draws it)."""
import hashlib

import plotly.graph_objects as go

from viz import widgets
from viz.live_figure import BUNDLE, DIGEST, LOADER, LiveFigure


def test_live_figure_is_a_figure_widget_with_the_figure_s_traces_and_layout():
    fig = LiveFigure(go.Figure(go.Bar(y=[3, 1]), layout=dict(title="t")))
    assert isinstance(fig, go.FigureWidget)
    assert [t.type for t in fig.data] == ["bar"] and list(fig.data[0].y) == [3, 1]
    assert fig.layout.title.text == "t"


def test_the_first_state_carries_plotly_s_module_and_a_small_loader_keyed_by_its_digest():
    state = LiveFigure().get_state()
    # in the state the comm opens with: anywidget holds later messages until the loader's initialize returns
    assert state["_longlab_bundle"] == str(go.FigureWidget._esm) == BUNDLE
    assert len(BUNDLE) > 1_000_000 and "export" in BUNDLE
    assert state["_esm"] == LOADER and len(LOADER) < 4_000
    assert DIGEST == hashlib.sha256(BUNDLE.encode()).hexdigest()[:16] and f"__longlab_plotly_widget_{DIGEST}" in LOADER


def test_interactive_widgets_are_live_figures():
    assert isinstance(widgets.as_widget(go.Figure(), True), LiveFigure)
    assert not isinstance(widgets.as_widget(go.Figure(), False), go.FigureWidget)


def test_headless_use_never_loads_the_figure_widget():
    """Loading plotly's FigureWidget class costs about 1 s: papermill runs and tests (headless) must not pay it."""
    import subprocess
    import sys

    code = ("import sys, ipywidgets as w, plotly.graph_objects as go; from viz import widgets; "
            "widgets.explorer(lambda n: go.Figure(), {'n': w.IntSlider()}, flag=False); "
            "widgets.as_widget(go.Figure(), False); "
            "print('viz.live_figure' in sys.modules, 'plotly.graph_objs._figurewidget' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
