"""viz.theme: the small, stable styling API other viz modules rely on."""
import plotly.graph_objects as go
import pytest

from viz import theme


def test_style_sets_title_axes_and_fonts():
    fig = theme.style(go.Figure(go.Scatter(y=[1, 2])), title="cost", x=theme.axis_label("N", "tokens"), y="FLOPs")
    assert fig.layout.title.text == "cost"
    assert fig.layout.xaxis.title.text == "N (tokens)"
    assert fig.layout.yaxis.title.text == "FLOPs"
    assert fig.layout.font.family == theme.FONT_FAMILY
    assert fig.layout.showlegend is True


def test_apply_theme_returns_same_figure_and_keeps_data():
    fig = go.Figure(go.Bar(y=[3, 1]))
    assert theme.apply_theme(fig) is fig
    assert list(fig.data[0].y) == [3, 1]
    assert fig.layout.plot_bgcolor == theme.COLORS["background"]


def test_palettes():
    assert theme.branch_color(0) == theme.BRANCH_COLORS[0]
    assert theme.branch_color(len(theme.BRANCH_COLORS)) == theme.BRANCH_COLORS[0]  # cycles
    assert len(set(theme.BRANCH_COLORS)) == len(theme.BRANCH_COLORS)
    for name in ("dense", "sliding", "dilated", "memorizing", "focused", "ulysses", "ring", "zigzag", "longnet"):
        assert theme.method_color(name) == theme.METHOD_COLORS[name]
        assert theme.method_color(name.upper()) == theme.METHOD_COLORS[name]
    assert theme.method_color("no-such-method") == theme.COLORS["muted"]


@pytest.mark.parametrize("unit, want", [(None, "memory"), ("GiB", "memory (GiB)")])
def test_axis_label(unit, want):
    assert theme.axis_label("memory", unit) == want
