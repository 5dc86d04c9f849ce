"""viz.theme: the small, stable styling API other viz modules rely on, and the template registered once."""
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.subplots import make_subplots

from viz import theme


def test_template_is_registered_once_and_is_the_default():
    assert theme.TEMPLATE in pio.templates and pio.templates.default == theme.TEMPLATE
    template = pio.templates[theme.TEMPLATE]
    assert template.layout.font.family == theme.FONT_FAMILY
    assert template.layout.plot_bgcolor == theme.COLORS["background"]
    assert template.layout.xaxis.gridcolor == theme.COLORS["grid"]


def test_every_new_figure_carries_the_theme():
    for fig in (go.Figure(go.Scatter(y=[1, 2])), make_subplots(rows=1, cols=2), go.FigureWidget()):
        assert fig.layout.template.layout.font.family == theme.FONT_FAMILY
        assert fig.layout.template.layout.title.xanchor == "left"


def test_viz_figures_do_not_style_themselves():
    from viz.complexity import dense_cost_figure
    fig = dense_cost_figure([1024, 4096])
    assert fig.layout.font.family is None and fig.layout.paper_bgcolor is None  # all from the template
    assert fig.layout.template.layout.font.family == theme.FONT_FAMILY


def test_palettes():
    assert theme.branch_color(0) == theme.BRANCH_COLORS[0]
    assert theme.branch_color(len(theme.BRANCH_COLORS)) == theme.BRANCH_COLORS[0]  # cycles
    assert len(set(theme.BRANCH_COLORS)) == len(theme.BRANCH_COLORS)
    for name in ("dense", "sliding", "dilated", "memorizing", "focused", "ulysses", "ring", "zigzag", "longnet"):
        assert theme.method_color(name) == theme.METHOD_COLORS[name]
        assert theme.method_color(name.upper()) == theme.METHOD_COLORS[name]
    assert theme.method_color("no-such-method") == theme.COLORS["muted"]
    assert theme.series_color("dilated w0=4", 3) == theme.METHOD_COLORS["dilated"]
    assert theme.series_color("my pattern", 2) == theme.branch_color(2)


@pytest.mark.parametrize("unit, want", [(None, "memory"), ("GiB", "memory (GiB)")])
def test_axis_label(unit, want):
    assert theme.axis_label("memory", unit) == want


def test_label_headroom_leaves_room_above_the_highest_point():
    lo, hi = theme.label_headroom([2.6, 2.74, None, float("nan"), 2.61])
    assert lo == pytest.approx(2.6 - 0.06 * 0.14) and hi == pytest.approx(2.74 + 0.15 * 0.14)
    assert theme.label_headroom([5.0]) == pytest.approx([5.0 - 0.3, 5.0 + 0.75])  # one point: its size sets the span
    with pytest.raises(ValueError, match="finite"):
        theme.label_headroom([float("nan")])
