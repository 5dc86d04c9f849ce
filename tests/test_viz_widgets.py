"""viz.widgets: the interactive/headless switch and the slider-driven explorer."""
import ipywidgets as w
import plotly.graph_objects as go
import pytest

from viz import widgets


def _figure(n):
    return go.Figure(go.Scatter(y=list(range(n))), layout=dict(title=f"n={n}"))


def test_interactive_rules(monkeypatch):
    monkeypatch.delenv(widgets.HEADLESS_ENV, raising=False)
    assert widgets.interactive(True) is True and widgets.interactive(False) is False
    assert widgets.interactive() is False  # plain pytest process: no IPython kernel
    monkeypatch.setenv(widgets.HEADLESS_ENV, "1")
    assert widgets.interactive() is False
    assert widgets.interactive(True) is True  # an explicit flag wins
    with pytest.raises(TypeError, match="interactive"):
        widgets.interactive("yes")


def test_as_widget():
    fig = _figure(3)
    assert widgets.as_widget(fig, False) is fig
    live = widgets.as_widget(fig, True)
    assert isinstance(live, go.FigureWidget) and list(live.data[0].y) == [0, 1, 2]


def test_explorer_headless_returns_static_figure():
    fig = widgets.explorer(_figure, {"n": w.IntSlider(value=4, min=1, max=9)}, flag=False)
    assert type(fig) is go.Figure and fig.layout.title.text == "n=4"


def test_explorer_redraws_on_change():
    slider = w.IntSlider(value=4, min=1, max=9)
    box = widgets.explorer(_figure, {"n": slider}, flag=True)
    assert isinstance(box, w.VBox) and box.figure in box.children
    assert box.figure.layout.title.text == "n=4"
    assert slider.continuous_update is False  # a drag redraws once, on release
    slider.value = 7
    assert box.figure.layout.title.text == "n=7"
    assert list(box.figure.data[0].y) == list(range(7))


def test_explorer_rejects_bad_input():
    with pytest.raises(TypeError, match="make_figure"):
        widgets.explorer(None, {"n": w.IntSlider()})
    with pytest.raises(ValueError, match="controls"):
        widgets.explorer(_figure, {})
    with pytest.raises(TypeError, match=r"controls\['n'\]"):
        widgets.explorer(_figure, {"n": 3})


def test_explorer_hides_controls_that_do_not_apply():
    kind, size = w.Dropdown(options=["a", "b"], value="a"), w.IntSlider(value=2, min=1, max=9)
    box = widgets.explorer(lambda kind, n: _figure(n), {"kind": kind, "n": size}, flag=True,
                           shown_when={"n": lambda v: v["kind"] == "b"})
    assert size.layout.display == "none"
    kind.value = "b"
    assert size.layout.display is None
    size.value = 5
    assert box.figure.layout.title.text == "n=5"
    with pytest.raises(ValueError, match="not controls"):
        widgets.explorer(_figure, {"n": w.IntSlider()}, flag=True, shown_when={"m": lambda v: True})


def test_pattern_explorer_shows_only_the_sliders_of_the_chosen_kind():
    from viz.pattern_heatmap import pattern_explorer

    box = pattern_explorer(kind="dilated", n=8, flag=True)
    shown = {name for name, c in box.controls.items() if c.layout.display != "none"}
    assert "window" not in shown and {"segment", "ratio", "branches"} <= shown
    box.controls["kind"].value = "sliding"
    shown = {name for name, c in box.controls.items() if c.layout.display != "none"}
    assert "window" in shown and not {"segment", "ratio", "branches"} & shown


def test_gaps_turns_masked_and_non_finite_values_into_none():
    z = widgets.gaps([[1.0, float("nan")], [float("inf"), 4.0]], keep=[[True, True], [True, False]])
    assert z.tolist() == [[1.0, None], [None, None]]
    assert widgets.gaps([0.5, -1.0]).tolist() == [0.5, -1.0]
