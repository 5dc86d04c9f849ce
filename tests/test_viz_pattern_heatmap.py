"""viz.pattern_heatmap: every cell of the figure agrees with the Pattern object it was drawn from."""
import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import dilated_branches

from longlab.attention.patterns import Dense, Dilated, SlidingWindow
from viz import pattern_heatmap as ph
from viz.branch_colors import _rgb, combo_color
from viz.theme import BRANCH_COLORS


def _decode(fig):
    """(N, N) list of branch-label sets per cell, read back from z + colour bar tick text."""
    heat = fig.data[0]
    ticks = list(heat.colorbar.ticktext)
    return [[None if v is None else ticks[int(v)] for v in row] for row in heat.z]


def _expected_label(pattern, heads, head, n, query, key):
    names = pattern.branch_names()
    keys = pattern.keys_for(query, head, heads, n)
    seen = [b for b in range(pattern.num_branches) if key in keys[b].tolist()]
    if not seen:
        return None
    return " + ".join(names[b] for b in seen) + (f" (x{len(seen)})" if len(seen) > 1 else "")


@st.composite
def dilated_cases(draw):
    segments, rates, heads, offsets = draw(dilated_branches(max_branches=3, max_multiple=4, max_heads=4))
    causal = draw(st.booleans())
    n = draw(st.integers(1, 20))
    head = draw(st.integers(0, heads - 1))
    return Dilated(tuple(segments), tuple(rates), causal=causal, offsets=offsets), heads, head, n


@given(dilated_cases())
def test_cells_match_pattern(case):
    pattern, heads, head, n = case
    fig = ph.pattern_heatmap(pattern, n, heads=heads, head=head)
    cells = _decode(fig)
    mult = pattern.multiplicity(heads, n)[head]
    custom = np.asarray(fig.data[0].customdata)
    for q in range(n):
        for k in range(n):
            assert cells[q][k] == _expected_label(pattern, heads, head, n, q, k)
            assert int(custom[q, k, 0]) == int(mult[q, k])
    assert f"N = {n}" in fig.layout.title.text and f"head {head} of {heads}" in fig.layout.title.text


def test_dense_and_sliding_shapes():
    dense = _decode(ph.pattern_heatmap(Dense(causal=True), 6))
    assert all((dense[i][j] is not None) == (j <= i) for i in range(6) for j in range(6))
    sliding = _decode(ph.pattern_heatmap(SlidingWindow(window=3), 8))
    assert all((sliding[i][j] is not None) == (abs(i - j) < 3) for i in range(8) for j in range(8))


def test_multiplicity_is_visible():
    pattern = Dilated((2, 4), (1, 2))  # head 0 sees row 0 of each 4-segment through both branches
    fig = ph.pattern_heatmap(pattern, 8, heads=1)
    assert fig.data[0].text[0][0] == "2" and fig.data[0].text[1][1] == ""
    assert any("(x2)" in t for t in fig.data[0].colorbar.ticktext)
    assert ph.pattern_heatmap(pattern, 64, count_limit=48).data[0].text is None  # no digits on big maps


def test_colours():
    assert combo_color((0,)) == BRANCH_COLORS[0]
    single, double = _rgb(combo_color((1,))), _rgb(combo_color((1, 1)))
    assert (double <= single).all() and double.sum() < single.sum()  # seen twice -> darker


def test_bad_input():
    with pytest.raises(TypeError, match="Pattern"):
        ph.pattern_heatmap("dilated", 8)
    with pytest.raises(ValueError, match="head"):
        ph.pattern_heatmap(Dense(), 8, heads=2, head=2)
    with pytest.raises(ValueError, match="n"):
        ph.pattern_heatmap(Dense(), 0)
    with pytest.raises(ValueError, match="512"):
        ph.pattern_heatmap(Dense(), 1024)
    with pytest.raises(ValueError, match="kind"):
        ph.make_pattern("ring")


def test_make_pattern_geometric_schedule():
    p = ph.make_pattern("dilated", segment=4, ratio=3, branches=3, causal=True)
    assert p.segment_lengths == (4, 12, 36) and p.dilation_rates == (1, 3, 9) and p.causal
    assert ph.make_pattern("sliding", window=5).window == 5
    assert isinstance(ph.make_pattern("dense"), Dense)


def test_explorer_headless_equals_plain_figure():
    fig = ph.pattern_explorer(kind="sliding", n=12, heads=2, window=3, flag=False)
    want = ph.pattern_heatmap(SlidingWindow(window=3), 12, heads=2, head=0)
    assert type(fig) is go.Figure and fig.to_json() == want.to_json()


def test_explorer_sliders_redraw():
    box = ph.pattern_explorer(kind="dilated", n=16, heads=4, segment=4, ratio=2, branches=2, flag=True)
    assert isinstance(box, w.VBox)
    z0 = np.asarray(box.figure.data[0].z).copy()
    box.controls["head"].value = 3  # another head keeps other rows
    z1 = np.asarray(box.figure.data[0].z)
    assert "head 3 of 4" in box.figure.layout.title.text
    assert not np.array_equal(z0 == None, z1 == None)  # noqa: E711  (elementwise: the unseen cells moved)
    box.controls["kind"].value = "dense"
    assert box.figure.layout.title.text.startswith("Dense")
    box.controls["n"].value = 20
    assert np.asarray(box.figure.data[0].z).shape == (20, 20)
