"""Interactive when a person is looking, static when headless: one switch for every notebook widget.

`interactive(flag=None)` decides: an explicit True/False wins; otherwise the environment variable
LONGLAB_HEADLESS ("1"/"true"/"yes" -> headless) wins; otherwise we are interactive only inside a running
IPython kernel (JupyterLab, VS Code). tests/test_notebooks.py sets LONGLAB_HEADLESS=1, so papermill runs
render plain go.Figure outputs (which survive in the executed .ipynb) instead of widget views that need a
live kernel.

`explorer(make_figure, controls)` is the slider-driven wrapper every viz widget uses: interactive -> an
ipywidgets VBox(controls, FigureWidget) that redraws on every change (a new LiveFigure each time);
headless -> make_figure(**defaults).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np
import plotly.graph_objects as go

HEADLESS_ENV = "LONGLAB_HEADLESS"


def interactive(flag: bool | None = None) -> bool:
    """True when widgets should be live (see module docstring for the rule)."""
    if flag is not None:
        if not isinstance(flag, bool):
            raise TypeError(f"interactive must be True, False or None, got {flag!r}")
        return flag
    env = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if env in ("1", "true", "yes"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def gaps(values, keep=None) -> np.ndarray:
    """`values` as an object array with None wherever `keep` is False or the value is not finite: plotly draws
    None as a gap, and None is valid JSON, while a NaN sent by a live FigureWidget is not (jupyter-client warns
    "Out of range float values are not JSON compliant")."""
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) if keep is None else np.asarray(keep, dtype=bool) & np.isfinite(values)
    out = values.astype(object)
    out[~keep] = None
    return out


def as_widget(fig: go.Figure, flag: bool | None = None):
    """LiveFigure(fig) (a go.FigureWidget, see viz.live_figure) when interactive(flag), else `fig` unchanged."""
    if not interactive(flag):
        return fig
    from .live_figure import LiveFigure  # loading plotly's FigureWidget takes about 1 s: only when live

    return LiveFigure(fig)


def explorer(make_figure: Callable[..., go.Figure], controls: Mapping[str, object], flag: bool | None = None,
             columns: int = 3, shown_when: Mapping[str, Callable[[dict], bool]] | None = None):
    """Slider-driven figure: `make_figure(**{name: control.value})` redrawn whenever a control changes.

    controls: name -> ipywidgets control (IntSlider, Dropdown, Checkbox, ...); names are make_figure's
    keyword arguments. shown_when: name -> predicate on the current values; the control is shown only while it
    holds (a slider that does not apply to the chosen option is hidden, not left inert). Returns an ipywidgets
    VBox (controls on top, a FigureWidget below) when interactive, else the static go.Figure for the controls'
    current values. Sliders redraw when released, not at every value a drag passes (continuous_update=False).
    The VBox keeps `.figure` (the FigureWidget) and `.controls` attributes for tests and notebooks.
    """
    if not callable(make_figure):
        raise TypeError(f"make_figure must be callable, got {type(make_figure).__name__}")
    if not controls:
        raise ValueError("controls must name at least one ipywidgets control, e.g. {'n': IntSlider(...)}")
    for name, control in controls.items():
        if not hasattr(control, "value") or not hasattr(control, "observe"):
            raise TypeError(f"controls[{name!r}] must be an ipywidgets control, got {type(control).__name__}")

    def values():
        return {name: control.value for name, control in controls.items()}

    if not interactive(flag):
        return make_figure(**values())

    import ipywidgets as w

    from .live_figure import LiveFigure

    shown_when = dict(shown_when or {})
    unknown = set(shown_when) - set(controls)
    if unknown:
        raise ValueError(f"shown_when names {sorted(unknown)}, which are not controls; use names of {list(controls)}")
    for control in controls.values():
        # A drag would otherwise send every value it passes, each a full redraw queued in the kernel: the figure
        # would trail the slider by seconds. The figure follows on release (and on each arrow-key step).
        if hasattr(control, "continuous_update"):
            control.continuous_update = False
    figure = LiveFigure(make_figure(**values()))

    def show_applicable():
        now = values()
        for name, applies in shown_when.items():
            controls[name].layout.display = None if applies(now) else "none"

    def redraw(_change=None):
        # A fresh figure per redraw: the front end builds it from its full state in one message. Editing the
        # live one in place (delete traces, add traces, relayout) is a burst of messages whose transient values
        # a busy browser can miss, leaving a blank figure (seen under load in the browser test). LiveFigure
        # makes the fresh figure cheap: plotly's front-end module is not compiled again.
        show_applicable()
        old, box.figure = box.figure, LiveFigure(make_figure(**values()))
        box.children = (*box.children[:-1], box.figure)
        old.close()

    show_applicable()

    for control in controls.values():
        control.observe(redraw, names="value")
    items = list(controls.values())
    rows = [w.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
    box = w.VBox([*rows, figure])
    box.figure, box.controls, box.redraw = figure, dict(controls), redraw
    return box
