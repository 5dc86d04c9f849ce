"""LiveFigure: a plotly FigureWidget whose 5 MB front-end module is compiled once per browser page, not per figure.

plotly's FigureWidget is an anywidget that carries its whole front end (plotly.js and the widget code, about
5 MB of JavaScript) as its `_esm` text, and the page imports that text from a fresh blob URL for every new
widget: every explorer redraw (a new figure, see `viz.widgets.explorer`) compiled and ran plotly.js again,
about 1 s of the 1.7-2.0 s a slider move took on a 2-core machine (0.7-0.9 s with this class). A LiveFigure's
`_esm` is a small loader instead, and plotly's module text travels in the `_longlab_bundle` trait. The loader
imports it once and keeps the module on the page (`globalThis`, one entry per bundle digest); every later
figure reuses it. Each figure still carries the text in its initial state, so a figure never waits for another
one or for its kernel (after a page reload, or while later cells still run). Traces, layout and events are
plotly's FigureWidget unchanged.
"""
from __future__ import annotations

import hashlib

import plotly.graph_objects as go
import traitlets

BUNDLE = str(go.FigureWidget._esm)  # plotly's widget module (widgetbundle.js), as its FigureWidget sends it
DIGEST = hashlib.sha256(BUNDLE.encode()).hexdigest()[:16]

# initialize must not wait for a message from the kernel: anywidget holds a model's messages until its
# initialize returns. The module text is therefore in the model's first state.
LOADER = """
const KEY = "__longlab_plotly_widget_DIGEST";
function plotlyModule(code) {
  if (!globalThis[KEY]) {
    const url = URL.createObjectURL(new Blob([code], {type: "text/javascript"}));
    const module = import(url).finally(() => URL.revokeObjectURL(url));
    module.catch(() => { if (globalThis[KEY] === module) delete globalThis[KEY]; });  // the next figure retries
    globalThis[KEY] = module;
  }
  return globalThis[KEY];
}
let widget;  // anywidget imports this loader afresh for every model: one plotly widget per model
export default {
  async initialize(context) {
    const module = await plotlyModule(context.model.get("_longlab_bundle"));
    widget = typeof module.default === "function" ? await module.default() : module.default;
    return widget.initialize ? widget.initialize(context) : undefined;
  },
  render(context) {
    return widget.render(context);
  },
};
""".replace("DIGEST", DIGEST)


class LiveFigure(go.FigureWidget):
    """go.FigureWidget with a front end compiled once per page (see the module docstring); build it exactly like
    one: LiveFigure(fig) or LiveFigure(data=..., layout=...)."""

    _esm = LOADER
    _longlab_bundle = traitlets.Unicode(BUNDLE).tag(sync=True)
